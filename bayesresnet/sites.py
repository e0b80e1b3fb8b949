"""Names of every sample site of the model: public API (ArviZ dims and saved files key on them).

The network parameters are sampled under the names the forward pass reads, so one
posterior draw of these sites is directly a parameter dict for
:func:`bayesresnet.resnet.apply`.
"""

__all__ = [
    "INPUT_WEIGHT",
    "INPUT_BIAS",
    "HIDDEN_WEIGHT",
    "HIDDEN_BIAS",
    "OUTPUT_WEIGHT",
    "OUTPUT_BIAS",
    "BASIS_SCALE",
    "ARD_SCALE",
    "NOISE_SCALE",
    "OBS",
    "STIFFNESS_PENALTY",
    "DATA_PLATE",
    "NETWORK",
    "DIMS",
]

INPUT_WEIGHT = "input_weight"  # [d, width]
INPUT_BIAS = "input_bias"  # [width]
HIDDEN_WEIGHT = "hidden_weight"  # [K, width, width]: coefficients C_k of W(t)
HIDDEN_BIAS = "hidden_bias"  # [K, width]: coefficients of b(t)
OUTPUT_WEIGHT = "output_weight"  # [width, out]
OUTPUT_BIAS = "output_bias"  # [out]
BASIS_SCALE = "basis_scale"  # [K]: optional learned prior scale per basis function
ARD_SCALE = "ard_scale"  # [d]: optional learned prior scale per input (input relevance)
NOISE_SCALE = "noise_scale"  # [out]: observation noise sd, in standardized output units
OBS = "y"  # [N, out]: the likelihood
DATA_PLATE = "data"
STIFFNESS_PENALTY = "stiffness_penalty"  # factor: −λ × the stiffness measure (optional)

#: The sites that make up the network's parameter dict, in a fixed order.
NETWORK = (INPUT_WEIGHT, INPUT_BIAS, HIDDEN_WEIGHT, HIDDEN_BIAS, OUTPUT_WEIGHT, OUTPUT_BIAS)

#: Named dimensions of each site (without the sample dimensions), for ArviZ.
DIMS = {
    INPUT_WEIGHT: ("input", "hidden"),
    INPUT_BIAS: ("hidden",),
    HIDDEN_WEIGHT: ("basis", "hidden_in", "hidden_out"),
    HIDDEN_BIAS: ("basis", "hidden"),
    OUTPUT_WEIGHT: ("hidden", "output"),
    OUTPUT_BIAS: ("output",),
    BASIS_SCALE: ("basis",),
    ARD_SCALE: ("input",),
    NOISE_SCALE: ("output",),
    OBS: ("obs", "output"),
}
