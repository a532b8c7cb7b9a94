"""TinyBeauty: a tiny residual U-Net that puts one makeup style on a face.

Reference: Jin et al., "Toward Tiny and High-quality Facial Makeup with Data Amplify
Learning", ECCV 2024. The network predicts a *residual* that is added to the input face:

    made_up = clamp(face + residual(face), 0, 1)

Contract: images are float RGB in [0, 1], NCHW, H and W divisible by ``INPUT_MULTIPLE`` (8:
the stem's stride 2 and two max-pools). The network is shaped for a byte budget, not copied
from a parameter claim: every shipped int8 artifact must stay under the size budget
(``SIZE_BUDGET_BYTES`` in models/gates.py), so the weights get ~70 KB of it (one byte
per parameter) and format overhead the rest.

Layout (resolutions for a 256x256 input):

    stem    3x3 conv, stride 2            256 -> 128   (downsample before anything costly)
    enc1    3x3 conv                      128          -> skip 1
    enc2    maxpool + 3x3 conv            64           -> skip 2
    enc3    maxpool + 3x3 conv            32           -> skip 3
    bottleneck  dilated 3x3 convs         32           (wider receptive field, no 4th pool)
    dec3    concat(skip 3) + 3x3 conv     32
    dec2    upsample + concat(skip 2) + 3x3 conv   64
    dec1    upsample + concat(skip 1) + 3x3 conv   128
    head    1x1 conv to 3*2*2 channels + pixel shuffle -> 3-channel residual at 256

Several looks in one network (``looks`` in the config, more than one name): one network whose decoder
each look gates. The app gives ``look_weights`` [N, L] (one-hot to pick a look, or a blend); each of
dec3, dec2 and dec1 has a gate per look and channel in (0, 1), and its output is multiplied by the
look weights' mix of the gates:

    gated = features * (look_weights @ gates)[:, :, None, None]     (gates: [L, C], a row per look)

so each look turns the shared decoder's channels up and down (conditional scales: Dumoulin et al.,
ICLR 2017; FiLM, Perez et al., AAAI 2018) and the convolutions after a gate turn that into the look's
own features. A look costs ``c2 + 2 * c1`` parameters (56 in ``tiny``) and three broadcast Muls at
32, 64 and 128 px, whatever the number of looks. A gated output stays within its feature's range
(a gate is in (0, 1)), so an int8 file rounds it on that feature's scale: no new range. A blend mixes
the gates (a one-hot weight picks exactly its look's); the residual of a blend lies between the looks'
residuals but is not their weighted sum. One look builds exactly the one-look network (same modules,
keys and ``forward(face)``). See docs/design.md.

Only quantization-friendly ops: conv, ReLU (fused into the conv at int8), max-pool, nearest
upsampling, concat, pixel shuffle. No normalisation layers, so nothing has to be folded at export.

Train-time re-parameterisation (``reparam=True``; RepVGG, Ding et al. CVPR 2021; ECBSR, Zhang et
al. ACM MM 2021; OREPA, Hu et al. CVPR 2022): every 3x3 conv of the residual network trains as
parallel 3x3, 1x1 and (where input and output have the same shape) identity branches, each with a
learnable per-channel scale, and :func:`merge` sums them into one plain 3x3 conv, exactly, before
anything ships. Without the scales (or BatchNorm) the branches would be one linear function of one
kernel, and only the centre tap's step size would change; with them the merged kernel is a
product of parameters, so training follows another path to weights of the same shape.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.variants import DEFAULT_LOOK, INPUT_MULTIPLE, VARIANT_FIELDS

# A model without a looks entry holds the built-in set's one look.
DEFAULT_LOOKS = (DEFAULT_LOOK,)


@dataclass(frozen=True)
class TinyBeautyConfig:
    """Shape of the network. Stored in every checkpoint so a checkpoint alone rebuilds it."""

    widths: tuple[int, int, int] = (16, 24, 48)  # enc1/dec1, enc2/dec2, enc3/dec3 channels
    bottleneck_width: int = 48
    bottleneck_convs: int = 1
    bottleneck_dilation: int = 2
    # ReLU only (ReLU6 is not offered): conv+ReLU fuses into one int8 op in every runtime, and
    # torch 2.13's quantized ReLU6/hardtanh on QNNPACK returns wrong values for channels-last
    # tensors (what a quantized conv produces): the .ptl of a ReLU6 model scored 20 dB against
    # PyTorch where the same weights with ReLU scored 62 dB (docs/design.md).
    activation: str = "relu"
    in_channels: int = 3  # the face's colours, and the residual's: one channel per colour
    # Region maps the stem reads beside the face, one channel each in this order (faces/regions.json's names,
    # e.g. lips, eyes, cheeks; soft masks in [0, 1] from the face mesh: train/region_maps.py), so where the parts
    # of a face are need not be learnt from the pixels. Empty: the face alone (the model config's default; training
    # gives its networks the maps unless --no-region-inputs). The export draws them and every file takes them as its
    # `regions` input (docs/export.md); forward refuses a call without them.
    region_inputs: tuple[str, ...] = ()
    # Train with parallel branches (ReparamConv) that `merge` folds into the plain convs before export.
    reparam: bool = False
    # The looks the network holds, by name, in the order of its look_weights input; one name builds
    # exactly the one-look network (no look input).
    looks: tuple[str, ...] = DEFAULT_LOOKS

    def __post_init__(self) -> None:
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"widths must be three positive ints, got {self.widths}")
        for name in ("bottleneck_width", "bottleneck_convs", "bottleneck_dilation"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.in_channels != 3:  # the residual is added to the face: one channel per colour
            raise ValueError(f"in_channels must be 3 (faces are RGB and every exporter takes RGB), "
                             f"got {self.in_channels}")
        if not self.looks or len(set(self.looks)) != len(self.looks) or not all(self.looks):
            raise ValueError(f"looks must be distinct non-empty names, at least one, got {list(self.looks)}")
        if len(set(self.region_inputs)) != len(self.region_inputs) or not all(self.region_inputs):
            raise ValueError(f"region_inputs must be distinct non-empty names, got {list(self.region_inputs)}")

    def to_dict(self) -> dict:
        """Plain types for a checkpoint. The default one look and no region inputs are left out, so a one-look
        berry model's model_config is what it was before several looks and region inputs existed."""
        out = asdict(self)
        out["widths"] = list(self.widths)
        out["looks"] = list(self.looks)
        out["region_inputs"] = list(self.region_inputs)
        if self.looks == DEFAULT_LOOKS:
            del out["looks"]
        if not self.region_inputs:
            del out["region_inputs"]
        return out

    @classmethod
    def from_dict(cls, values: dict) -> TinyBeautyConfig:
        values = dict(values)
        if values.get("stride") == INPUT_MULTIPLE:  # v1 checkpoints stored this constant as a field
            del values["stride"]
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model_config keys {unknown}; known keys are {sorted(known)}")
        for name in ("widths", "looks", "region_inputs"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


ACTIVATIONS = {"relu": nn.ReLU}

# Named variants: one dict, one factory (see `build_model`); their fields are models/variants.py's, which
# the command lines read without torch.
VARIANTS: dict[str, TinyBeautyConfig] = {name: TinyBeautyConfig(**values) for name, values in VARIANT_FIELDS.items()}


@dataclass(frozen=True)
class QuantizedOutput:
    """A tensor every int8 file holds in 8 bits: one convolution's output (after its ReLU).

    The network says what it is (:func:`quantized_outputs`); quantization-aware training, the skip
    rescaling (models/rescale.py), the palettization and every int8 exporter read it from there."""

    name: str  # its label in checkpoints' ranges and manifests: "enc1", "bottleneck"
    module: str  # the residual-network module that returns it: "enc1", "bottleneck.0", "head"
    conv: str  # that module's convolution (of the plain, merged network): "enc1.0", "head"
    # The outputs its convolution reads, by name, in the channel order of their concatenation (max-pool
    # and upsampling move values, not ranges); () for the face.
    reads: tuple[str, ...]
    # The output whose convolution reads the concatenation this one joins (int8 runtimes give a
    # concatenation one range for all its inputs); None if it joins none.
    joins: str | None
    # Quantization-aware training trains its weights as a look-up table (train/qat.py). The small edge
    # convolutions (stem, head) keep full int8 weights: the .mlpackage gives them more bits (they are the
    # sensitive ones and hold under 1% of the weights).
    palettized: bool


def quantized_outputs(config: TinyBeautyConfig) -> tuple[QuantizedOutput, ...]:
    """Every quantized output of the network ``config`` builds, in forward order (ResidualUNet.forward).

    The same with several looks: a gated decoder output (a gate is in (0, 1)) stays within its output's range,
    so the int8 files round it on that output's scale, and the convolution after it reads it as that output."""
    rows = [("stem", "stem", "stem.0", ()), ("enc1", "enc1", "enc1.0", ("stem",)),
            ("enc2", "enc2", "enc2.0", ("enc1",)), ("enc3", "enc3", "enc3.0", ("enc2",))]
    for index in range(config.bottleneck_convs):  # the last conv's output is the bottleneck's
        name = "bottleneck" if index == config.bottleneck_convs - 1 else f"bottleneck.{index}"
        rows.append((name, f"bottleneck.{index}", f"bottleneck.{index}.0", (rows[-1][0],)))
    rows += [("dec3", "dec3", "dec3.0", ("bottleneck", "enc3")), ("dec2", "dec2", "dec2.0", ("dec3", "enc2")),
             ("dec1", "dec1", "dec1.0", ("dec2", "enc1")), ("head", "head", "head", ("dec1",))]
    joins = {read: name for name, _module, _conv, reads in rows if len(reads) > 1 for read in reads}
    return tuple(QuantizedOutput(name, module, conv, reads, joins.get(name), palettized=name not in ("stem", "head"))
                 for name, module, conv, reads in rows)


class ReparamConv(nn.Module):
    """A 3x3 conv trained as parallel branches: ``s3 * conv3x3 + s1 * conv1x1 (+ s_id * input)``.

    The identity branch exists where input and output have the same shape (same channels,
    stride 1). A 1x1 conv is the centre tap of a 3x3 kernel at any stride and dilation (a
    stride-2 1x1 samples the pixels a stride-2, padding-1 3x3 centres on; a dilated 3x3's centre
    tap is undilated), so :meth:`merged` is exact. ``forward`` convolves once with the merged
    kernel (OREPA's online form: the same function and gradients as summing the branches, at
    the cost of one conv); :meth:`forward_branches` sums the branches themselves, for checking.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.stride, self.dilation = stride, dilation
        self.conv3 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)  # one bias is enough: conv3's
        self.identity = in_ch == out_ch and stride == 1
        # Both conv branches start Kaiming-initialised (ResidualUNet), scaled by 1/sqrt(2) so their sum
        # starts with the plain conv's output variance; the identity starts at 0 and is learnt.
        conv_scale = torch.full((out_ch,), 1 / math.sqrt(2))
        self.scale3, self.scale1 = nn.Parameter(conv_scale.clone()), nn.Parameter(conv_scale.clone())
        self.scale_identity = nn.Parameter(torch.zeros(out_ch)) if self.identity else None

    def merged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(3x3 kernel, bias) of the one plain conv equal to the sum of the branches."""
        kernel = self.scale3[:, None, None, None] * self.conv3.weight
        kernel = kernel + F.pad(self.scale1[:, None, None, None] * self.conv1.weight, [1, 1, 1, 1])
        if self.identity:
            eye = torch.eye(kernel.shape[0], dtype=kernel.dtype, device=kernel.device)
            kernel = kernel + F.pad((self.scale_identity[:, None] * eye)[:, :, None, None], [1, 1, 1, 1])
        return kernel, self.scale3 * self.conv3.bias

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        kernel, bias = self.merged()
        return F.conv2d(features, kernel, bias, stride=self.stride, padding=self.dilation, dilation=self.dilation)

    def forward_branches(self, features: torch.Tensor) -> torch.Tensor:
        summed = (self.scale3[:, None, None] * self.conv3(features)
                  + self.scale1[:, None, None] * self.conv1(features))
        return summed + self.scale_identity[:, None, None] * features if self.identity else summed


def conv_act(in_ch: int, out_ch: int, activation: str, stride: int = 1, dilation: int = 1,
             reparam: bool = False) -> nn.Sequential:
    conv = (ReparamConv(in_ch, out_ch, stride, dilation) if reparam
            else nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation))
    return nn.Sequential(conv, ACTIVATIONS[activation]())


class ResidualUNet(nn.Module):
    """Face -> makeup residual. This is the part that gets quantized at export."""

    def __init__(self, config: TinyBeautyConfig):
        super().__init__()
        c1, c2, c3 = config.widths
        cb, act, rep = config.bottleneck_width, config.activation, config.reparam
        self.stem = conv_act(config.in_channels + len(config.region_inputs), c1, act, stride=2, reparam=rep)
        self.enc1 = conv_act(c1, c1, act, reparam=rep)
        self.enc2 = conv_act(c1, c2, act, reparam=rep)
        self.enc3 = conv_act(c2, c3, act, reparam=rep)
        bottleneck = [conv_act(c3, cb, act, dilation=config.bottleneck_dilation, reparam=rep)]
        bottleneck += [
            conv_act(cb, cb, act, dilation=config.bottleneck_dilation, reparam=rep)
            for _ in range(config.bottleneck_convs - 1)
        ]
        self.bottleneck = nn.Sequential(*bottleneck)
        self.dec3 = conv_act(cb + c3, c2, act, reparam=rep)
        self.dec2 = conv_act(c2 + c2, c1, act, reparam=rep)
        self.dec1 = conv_act(c1 + c1, c1, act, reparam=rep)
        self.head = nn.Conv2d(c1, config.in_channels * 4, 1)
        # Several looks: a gate per look on each channel of dec3, dec2 and dec1, one table (none for one look).
        channels = {"dec3": c2, "dec2": c1, "dec1": c1}
        looks = len(config.looks)
        self.look_gates = LookGates(looks, {name: channels[name] for name in GATED_OUTPUTS}) if looks > 1 else None
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:  # a ReparamConv's 1x1 branch has none
                    nn.init.zeros_(module.bias)
        # Start near the identity mapping (a small residual is the no-makeup baseline) without
        # zeroing the head: a zero head gives the backbone no gradient and it dies.
        nn.init.normal_(self.head.weight, std=1e-3)

    def forward(self, face: torch.Tensor, look_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``face``: the face, with the region maps behind its colours for a network that takes them."""
        skip1 = self.enc1(self.stem(face))
        skip2 = self.enc2(self.pool(skip1))
        skip3 = self.enc3(self.pool(skip2))
        deep = self.bottleneck(skip3)
        gates = self.look_gates(look_weights) if self.look_gates is not None else {}
        deep = gated(self.dec3(torch.cat([deep, skip3], dim=1)), gates, "dec3")
        deep = gated(self.dec2(torch.cat([self.up(deep), skip2], dim=1)), gates, "dec2")
        deep = gated(self.dec1(torch.cat([self.up(deep), skip1], dim=1)), gates, "dec1")
        return F.pixel_shuffle(self.head(deep), 2)


def gated(features: torch.Tensor, gates: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """Output ``name`` times its mixed gates [N, C, 1, 1] (several looks); as it is for one look. The features are
    the Mul's first operand: an int8 graph reads the product as that output (export/common.py)."""
    return features * gates[name] if name in gates else features


# The decoder outputs each look gates, in forward order.
GATED_OUTPUTS = ("dec3", "dec2", "dec1")
# A gate is sigmoid(GATE_SHARPNESS * p): Adam moves p by about its learning rate a step, and the sharpness
# lets a gate cross (0, 1) in a few hundred steps (p itself would take thousands). Gates start at
# sigmoid(2) = 0.88: every look starts as the same network, with room to turn a channel up.
GATE_SHARPNESS = 20.0
GATE_START = 0.1


class LookGates(nn.Module):
    """Every look's gates on the gated outputs' channels, one table [L, sum of C]: row l is look l's, the outputs'
    channels side by side in :data:`GATED_OUTPUTS` order. Called with ``look_weights`` [N, L], it mixes each
    output's part of the table: {name: [N, C, 1, 1]}."""

    def __init__(self, looks: int, channels: dict[str, int]):
        super().__init__()
        self.channels = dict(channels)
        self.weight = nn.Parameter(torch.full((looks, sum(self.channels.values())), GATE_START))

    def gates(self) -> torch.Tensor:
        """[L, sum of C] in (0, 1)."""
        return torch.sigmoid(GATE_SHARPNESS * self.weight)

    def tables(self) -> dict[str, torch.Tensor]:
        """Each gated output's part of :meth:`gates`: {name: [L, C]}."""
        return dict(zip(self.channels, self.gates().split(list(self.channels.values()), dim=1), strict=True))

    def forward(self, look_weights: torch.Tensor) -> dict[str, torch.Tensor]:
        return mixed_gates(look_weights, self.tables(), self.channels)


def mixed_gates(look_weights: torch.Tensor, tables: dict[str, torch.Tensor],
                channels: dict[str, int]) -> dict[str, torch.Tensor]:
    """Each gated output's gates [L, C] mixed by ``look_weights`` [N, L]: {name: [N, C, 1, 1]}. In most files a
    matmul with a constant and a reshape per output (export/common.py: ConstantGates; the .pte's one convolution
    and a slice per output: export/pte_format.py: ConvGates), no split, and the channel counts are plain ints,
    so a traced graph reads no shapes (every op costs bytes in every file)."""
    return {name: (look_weights @ table).reshape(-1, channels[name], 1, 1) for name, table in tables.items()}


class TinyBeauty(nn.Module):
    """The full model: ``clamp(face + residual, 0, 1)``.

    ``forward(face, clamp=False)`` returns ``face + residual`` without the clamp; training
    losses use it so saturated pixels still get a gradient (with the clamp inside the loss the
    residual drifts to large values, which ruins int8 activation scales). It is a forward
    argument, not a second method, so DistributedDataParallel still syncs gradients.
    """

    def __init__(self, config: TinyBeautyConfig | None = None):
        super().__init__()
        self.config = config or TinyBeautyConfig()
        self.residual = ResidualUNet(self.config)

    def forward(self, face: torch.Tensor, look_weights: torch.Tensor | None = None, clamp: bool = True,
                regions: torch.Tensor | None = None) -> torch.Tensor:
        """``look_weights`` [N, L] (several looks only; one-hot picks a look) says which looks to put on;
        ``regions`` [N, K, H, W] (region-input networks only) says where the face's parts are."""
        features = self.network_input(face, regions)
        made_up = face + self.residual(features, self.check_look_weights(face, look_weights))
        return torch.clamp(made_up, 0.0, 1.0) if clamp else made_up

    def network_input(self, face: torch.Tensor, regions: torch.Tensor | None) -> torch.Tensor:
        """What the stem reads: the face, with ``regions`` behind it where the config names region inputs; a
        ValueError naming the maps if they do not fit."""
        names = self.config.region_inputs
        if not names:
            if regions is not None:
                raise ValueError("this network takes the face alone, no region maps (it was trained with "
                                 "--no-region-inputs)")
            return face
        expected = [face.shape[0], len(names), *face.shape[2:]]
        if regions is None or list(regions.shape) != expected:
            found = "none" if regions is None else list(regions.shape)
            raise ValueError(f"this network takes {len(names)} region maps ({', '.join(names)}) beside the face "
                             f"(trained with region inputs): give regions of shape {expected} in [0, 1] "
                             f"(train/region_maps.py draws them from the face mesh), got {found}")
        return torch.cat([face, regions.to(face.dtype)], dim=1)

    def check_look_weights(self, face: torch.Tensor, look_weights: torch.Tensor | None) -> torch.Tensor | None:
        """``look_weights`` as the residual network takes them; a ValueError naming the looks if they do not fit."""
        looks = self.config.looks
        if len(looks) == 1:
            if look_weights is not None:
                raise ValueError(f"this network holds one look ({looks[0]}) and takes no look_weights")
            return None
        expected = (face.shape[0], len(looks))
        if look_weights is None or tuple(look_weights.shape) != expected:
            found = "none" if look_weights is None else list(look_weights.shape)
            raise ValueError(f"this network holds {len(looks)} looks ({', '.join(looks)}): give look_weights of "
                             f"shape {list(expected)} (one-hot picks a look), got {found}")
        return look_weights.to(face.dtype)


def build_model(variant: str | TinyBeautyConfig | dict = "tiny", reparam: bool | None = None) -> TinyBeauty:
    """The one factory: a variant name, a config, or a config dict from a checkpoint;
    ``reparam`` (when given) overrides the config's."""
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
        config = VARIANTS[variant]
    elif isinstance(variant, dict):
        config = TinyBeautyConfig.from_dict(variant)
    else:
        config = variant
    return TinyBeauty(config if reparam is None else replace(config, reparam=reparam))


@torch.no_grad()
def merge(model: TinyBeauty) -> TinyBeauty:
    """The plain TinyBeauty (``reparam=False``, same widths) equal to ``model``: each ReparamConv's
    branches summed into one 3x3 conv. A plain model is returned as it is. The result has
    exactly the plain network's modules, parameter count and state-dict keys (loaded strictly)."""
    if not model.config.reparam:
        return model
    plain = TinyBeauty(replace(model.config, reparam=False)).to(next(model.parameters()).device)
    branched = {name for name, module in model.named_modules() if isinstance(module, ReparamConv)}
    state = {key: value for key, value in model.state_dict().items()
             if not any(key.startswith(name + ".") for name in branched)}
    for name in branched:
        state[f"{name}.weight"], state[f"{name}.bias"] = model.get_submodule(name).merged()
    plain.load_state_dict(state)
    return plain.train(model.training)


def one_hot_looks(look_indices: torch.Tensor, config: TinyBeautyConfig) -> torch.Tensor | None:
    """The look_weights that pick each sample's look (None for a one-look network, which takes none)."""
    if len(config.looks) == 1:
        return None
    return F.one_hot(look_indices.long(), len(config.looks)).float()


def example_look_weights(config: TinyBeautyConfig, batch: int = 1) -> torch.Tensor | None:
    """An even blend of every look (None for one look): a valid second input where any will do."""
    count = len(config.looks)
    return None if count == 1 else torch.full((batch, count), 1 / count)


def example_regions(config: TinyBeautyConfig, batch: int, height: int, width: int) -> torch.Tensor | None:
    """Empty region maps (None for a network without region inputs): a valid ``regions`` where any will do."""
    return torch.zeros(batch, len(config.region_inputs), height, width) if config.region_inputs else None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, height: int = 256, width: int = 256) -> int:
    """Multiply-accumulates of one forward pass (convolutions only; the rest is negligible)."""
    macs = 0

    def hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        macs += output.numel() * kernel

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width), example_look_weights(model.config),
                  regions=example_regions(model.config, 1, height, width))
    finally:
        for handle in handles:
            handle.remove()
    return macs


def describe(model: TinyBeauty, height: int = 256, width: int = 256) -> str:
    """What ships: a branched (reparam) model is described as its merged plain network."""
    shipped = merge(model)
    params = count_parameters(shipped)
    macs = count_macs(shipped, height, width)
    branches = (f" (trains with re-parameterised branches: {count_parameters(model):,} parameters, merged "
                "before export)" if model.config.reparam else "")
    looks, regions = model.config.looks, model.config.region_inputs
    branches += f"; {len(looks)} looks ({', '.join(looks)})" if len(looks) > 1 else ""
    branches += f"; region maps beside the face ({', '.join(regions)})" if regions else ""
    return (
        f"TinyBeauty {model.config.widths}/{model.config.bottleneck_width}: "
        f"{params:,} parameters, {macs / 1e9:.3f} GMAC at {height}x{width}, "
        f"fp32 {params * 4 / 1000:.1f} KB, int8 weights {params / 1000:.1f} KB{branches}"
    )
