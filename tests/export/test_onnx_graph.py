"""The shipped int8 ONNX's graph, as phones and onnxruntime see it: static shapes everywhere, one
NNAPI partition in onnxruntime's own checker, and int8 all the way to the residual Add."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort

from benchmark.mobile import interleaved_latency, mobile_usability, op_profile
from export.common import INPUT_NAME, REGIONS_INPUT_NAME
from export.formats import BY_NAME


def shipped(artifacts):
    return artifacts / BY_NAME["onnx"].filename


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray], profile_dir=None) -> tuple[np.ndarray, list[dict]]:
    """The model's output on ``feed`` (its inputs by name), and onnxruntime's profile events if ``profile_dir`` is
    given."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if profile_dir is not None:
        options.enable_profiling, options.profile_file_prefix = True, str(profile_dir / "profile")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    output = session.run(None, feed)[0]
    events = json.loads(open(session.end_profiling()).read()) if profile_dir is not None else []
    return output, events


def faces_for(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Random values in [0, 1] for each of the model's inputs (the face, and the default network's region maps on
    the 1/255 grid real maps lie on)."""
    generator, feed = np.random.default_rng(0), {}
    for value in model.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        feed[value.name] = generator.random(shape, dtype=np.float32)
        if value.name == REGIONS_INPUT_NAME:
            feed[value.name] = np.round(feed[value.name] * 255) / 255
    return feed


def test_every_value_has_a_static_shape(artifacts):
    model = onnx.shape_inference.infer_shapes(onnx.load(shipped(artifacts)), strict_mode=True)
    values = {v.name: v for v in [*model.graph.input, *model.graph.output, *model.graph.value_info]}
    for node in model.graph.node:
        assert all(node.input), f"{node.op_type} has an unnamed input: a shape the checker cannot see"
        for name in node.output:
            dims = values[name].type.tensor_type.shape.dim
            assert all(d.HasField("dim_value") and d.dim_value > 0 for d in dims), (node.op_type, name, dims)


def test_onnxruntime_checker_sees_one_nnapi_partition(artifacts):
    figures = mobile_usability(shipped(artifacts))
    nnapi = figures["nnapi"]
    assert figures["dynamic_values"] == 0 and nnapi["dynamic_shape_nodes"] == 0
    assert nnapi["partitions"] == 1 and nnapi["supported_nodes"] == nnapi["nodes"]
    assert nnapi["should_perform_well"] == "YES"


def test_only_the_input_quantize_and_the_residual_read_floats(artifacts, tmp_path):
    """What onnxruntime actually ran: every kernel but the face's QuantizeLinear and the residual
    Add and Clip reads uint8, DepthToSpace, Resize and the concatenations included."""
    model = onnx.load(shipped(artifacts))
    _, events = run(model, faces_for(model), tmp_path)
    reads = {}  # op -> element types of its largest inputs (the data, not scales and zero points)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            inputs = [next(iter(i.items())) for i in event["args"]["input_type_shape"]]
            dtype, _ = max(inputs, key=lambda item: np.prod(item[1]))
            reads.setdefault(event["args"]["op_name"], set()).add(dtype)
    assert {op for op, dtypes in reads.items() if "float" in dtypes} == {"QuantizeLinear", "Add", "Clip"}
    for op in ("DepthToSpace", "Resize", "QLinearConcat"):
        assert reads[op] == {"uint8"}, op


def test_depth_to_space_is_dcr_and_its_uint8_pair_changes_nothing(artifacts):
    model = onnx.load(shipped(artifacts))
    (d2s,) = [n for n in model.graph.node if n.op_type == "DepthToSpace"]
    assert onnx.helper.get_attribute_value(next(a for a in d2s.attribute if a.name == "mode")) == b"DCR"
    # The graph without the QuantizeLinear/DequantizeLinear pair after it: DepthToSpace on floats.
    (quantize,) = [n for n in model.graph.node if d2s.output[0] in n.input]
    (dequantize,) = [n for n in model.graph.node if quantize.output[0] in n.input]
    assert (quantize.op_type, dequantize.op_type) == ("QuantizeLinear", "DequantizeLinear")
    in_float = onnx.ModelProto()
    in_float.CopyFrom(model)
    graph = in_float.graph
    for node in graph.node:
        node.input[:] = [d2s.output[0] if name == dequantize.output[0] else name for name in node.input]
    for node in [n for n in graph.node if n.output[0] in (quantize.output[0], dequantize.output[0])]:
        graph.node.remove(node)
    faces = faces_for(model)
    assert np.array_equal(run(model, faces)[0], run(in_float, faces)[0])


def test_residual_reads_the_float_face_concatenations_copy_bytes_biases_match(artifacts):
    graph = onnx.load(shipped(artifacts)).graph
    (add,) = [n for n in graph.node if n.op_type == "Add"]
    assert INPUT_NAME in add.input  # not the uint8 copy the stem conv reads
    producers = {name: node for node in graph.node for name in node.output}
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    concats = [n for n in graph.node if n.op_type == "Concat"]
    assert concats
    for concat in concats:
        (quantize,) = [n for n in graph.node if concat.output[0] in n.input]
        params = [float(constants[name]) for name in quantize.input[1:3]]
        for name in concat.input:  # one scale and zero point in and out: onnxruntime copies bytes
            assert [float(constants[p]) for p in producers[name].input[1:3]] == params
    for conv in (n for n in graph.node if n.op_type == "Conv"):  # each bias in the scale int8 convs add it in
        x, w, b = (producers[name] for name in conv.input)
        np.testing.assert_array_equal(constants[b.input[1]], constants[x.input[1]] * constants[w.input[1]])


def test_weights_fit_7_bits_so_no_cpu_saturates(artifacts):
    """Every convolution's int8 weights lie in [-64, 64]: on x86 without VNNI onnxruntime adds two uint8 x int8
    products in a 16-bit lane, which 8-bit weights can saturate (onnx_format.py's docstring)."""
    graph = onnx.load(shipped(artifacts)).graph
    producers = {name: node for node in graph.node for name in node.output}
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    kernels = [constants[producers[conv.input[1]].input[0]] for conv in graph.node if conv.op_type == "Conv"]
    assert kernels and all(k.dtype == np.int8 for k in kernels)
    assert max(int(np.abs(k.astype(np.int16)).max()) for k in kernels) <= 64  # 255 x 64 x 2 < 32,767
    assert max(int(np.abs(k).max()) for k in kernels) >= 32  # the 7 bits are used, not fewer


def test_the_op_profile_and_the_interleaved_timing_feed_every_input_of_the_shipped_file(artifacts):
    """`python -m benchmark.mobile` on the default network's file: its face and its region maps are both fed."""
    profile = op_profile(shipped(artifacts), threads=1, runs=2)
    assert profile["QLinearConv"]["nodes"] > 0 and all(figures["ms"] >= 0 for figures in profile.values())
    (timed,) = interleaved_latency([shipped(artifacts)], threads=1, rounds=3)
    assert timed["median_ms"] > 0
