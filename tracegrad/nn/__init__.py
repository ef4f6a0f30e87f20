"""Neural network modules, losses, initializers and functional forms."""
from . import functional, init, parallel, utils
from .containers import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .layers import (GELU, Dropout, Embedding, Flatten, Identity, LayerNorm, LeakyReLU, Linear, LogSoftmax, ReLU,
                     Sigmoid, SiLU, Softmax, Softplus, Tanh)
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
           "Linear", "Embedding", "LayerNorm", "BatchNorm1d", "BatchNorm2d", "GroupNorm", "Dropout", "Flatten",
           "Identity", "ReLU", "Tanh", "Sigmoid", "SiLU", "GELU", "LeakyReLU", "Softplus", "Softmax", "LogSoftmax",
           "MSELoss", "L1Loss", "SmoothL1Loss", "NLLLoss", "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss",
           "functional", "init", "parallel", "utils"]
