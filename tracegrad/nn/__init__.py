"""Neural network modules, losses, initializers and functional forms."""
from . import functional, init, parallel, utils
from .containers import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, MaxPool2d
from .layers import (ELU, GELU, Dropout, Embedding, Flatten, Identity, LayerNorm, LeakyReLU, Linear, LogSoftmax, ReLU,
                     Sigmoid, SiLU, Softmax, Softplus, Tanh, Unflatten)
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, NLLLoss,
                   SmoothL1Loss)
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
           "Linear", "Embedding", "LayerNorm", "BatchNorm1d", "BatchNorm2d", "GroupNorm", "Dropout", "Flatten",
           "Unflatten", "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Identity", "ReLU", "Tanh",
           "Sigmoid", "SiLU", "ELU", "GELU", "LeakyReLU", "Softplus", "Softmax", "LogSoftmax", "MSELoss", "L1Loss",
           "SmoothL1Loss", "HuberLoss", "KLDivLoss", "NLLLoss", "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss",
           "functional", "init", "parallel", "utils"]
