"""Neural network modules, losses, initializers and functional forms."""
from . import functional, init, utils
from .layers import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Dropout, Embedding, Flatten, GELU, Identity,
                     L1Loss, LayerNorm, LeakyReLU, Linear, LogSoftmax, ModuleDict, ModuleList, MSELoss, NLLLoss, ReLU,
                     Sequential, Sigmoid, SiLU, SmoothL1Loss, Softmax, Tanh)
from .module import Module
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "Linear", "Embedding", "LayerNorm",
           "Dropout", "Flatten", "Identity", "ReLU", "Tanh", "Sigmoid", "SiLU", "GELU", "LeakyReLU", "Softmax",
           "LogSoftmax", "MSELoss", "L1Loss", "SmoothL1Loss", "NLLLoss", "CrossEntropyLoss", "BCELoss",
           "BCEWithLogitsLoss", "functional", "init", "utils"]
