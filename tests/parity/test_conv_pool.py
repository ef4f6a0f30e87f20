"""Convolution and pooling against PyTorch: values, gradients and errors over a grid of configurations."""
import pytest

from tests.parity.harness import check, check_error, randn

CONV2D = [dict(), dict(stride=2), dict(padding=1), dict(padding=(2, 0), stride=(1, 2)), dict(dilation=2, padding=2),
          dict(padding="same"), dict(padding="same", dilation=(1, 2)), dict(padding="valid"),
          dict(groups=2, padding=1), dict(groups=4, stride=(2, 1), dilation=(2, 1))]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("options", CONV2D, ids=str)
def test_conv2d(options, bias):
    groups = options.get("groups", 1)
    arrays = [randn(2, 4, 7, 6), randn(8, 4 // groups, 3, 2, seed=1)] + ([randn(8, seed=2)] if bias else [])
    check(lambda lib, x, w, *b: lib.nn.functional.conv2d(x, w, *b, **options), *arrays, atol=1e-5)


def test_conv2d_even_kernel_same_padding_puts_the_extra_row_after():
    check(lambda lib, x, w: lib.nn.functional.conv2d(x, w, padding="same"), randn(1, 2, 5, 6),
          randn(3, 2, 4, 2, seed=1), atol=1e-5)


def test_conv2d_unbatched():
    check(lambda lib, x, w: lib.nn.functional.conv2d(x, w, padding=1), randn(3, 5, 5), randn(2, 3, 3, 3, seed=1))


@pytest.mark.parametrize("options", [dict(), dict(stride=2, padding=1), dict(dilation=3, padding="same"),
                                     dict(groups=2)], ids=str)
def test_conv1d(options):
    check(lambda lib, x, w, b: lib.nn.functional.conv1d(x, w, b, **options), randn(2, 4, 11),
          randn(6, 4 // options.get("groups", 1), 3, seed=1), randn(6, seed=2), atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv2d_module_padding_modes(mode):
    def f(lib, x):
        lib.manual_seed(0)
        conv = lib.nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode)
        with lib.no_grad():
            conv.weight.copy_(lib.from_numpy(randn(3, 2, 3, 3, seed=3)))
            conv.bias.zero_()
        return conv(x)
    check(f, randn(2, 2, 5, 6), atol=1e-5)


def test_conv_module_shapes_and_default_init_bounds():
    import tracegrad
    conv = tracegrad.nn.Conv2d(4, 6, (3, 2), groups=2)
    assert tuple(conv.weight.shape) == (6, 2, 3, 2) and tuple(conv.bias.shape) == (6,)
    bound = 1 / (2 * 3 * 2) ** 0.5
    assert conv.weight.abs().max().item() <= bound and conv.bias.abs().max().item() <= bound
    assert tuple(tracegrad.nn.Conv1d(3, 5, 4).weight.shape) == (5, 3, 4)


@pytest.mark.parametrize("options", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                     dict(kernel_size=(2, 3), stride=1, dilation=(2, 1)),
                                     dict(kernel_size=2, stride=3, ceil_mode=True)], ids=str)
def test_max_pool2d(options):
    check(lambda lib, x: lib.nn.functional.max_pool2d(x, **options), randn(2, 3, 7, 8))
    check(lambda lib, x: lib.nn.MaxPool2d(**options, return_indices=True)(x), randn(2, 3, 7, 8))


@pytest.mark.parametrize("options", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                                     dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), divisor_override=5)],
                         ids=str)
def test_avg_pool2d(options):
    check(lambda lib, x: lib.nn.functional.avg_pool2d(x, **options), randn(2, 3, 7, 8))
    check(lambda lib, x: lib.nn.AvgPool2d(**options)(x), randn(3, 7, 8))


@pytest.mark.parametrize("size", [1, (3, 4), (5, None), (7, 8), (2, 3)], ids=str)
def test_adaptive_avg_pool2d(size):
    check(lambda lib, x: lib.nn.functional.adaptive_avg_pool2d(x, size), randn(2, 3, 7, 8))
    check(lambda lib, x: lib.nn.AdaptiveAvgPool2d(size)(x), randn(3, 7, 8))


def test_flatten_and_unflatten():
    check(lambda lib, x: lib.nn.Unflatten(1, (2, 6))(lib.nn.Flatten()(x)), randn(2, 3, 4))


def test_conv_errors():
    conv = lambda **o: lambda lib, x, w: lib.nn.functional.conv2d(x, w, **o)  # noqa: E731
    check_error(conv(), randn(1, 2, 5, 5), randn(3, 3, 3, 3))  # wrong in_channels
    check_error(conv(), randn(1, 2, 2, 2), randn(3, 2, 3, 3))  # kernel larger than the input
    check_error(conv(padding=1), randn(1, 2, 1, 1), randn(3, 2, 4, 4))  # ... than the padded input
    check_error(conv(groups=2), randn(1, 4, 5, 5), randn(3, 2, 3, 3))  # groups don't divide out channels
    check_error(conv(groups=3), randn(1, 4, 5, 5), randn(3, 2, 3, 3))  # nor the input channels
    check_error(conv(), randn(5, 5), randn(3, 2, 3, 3))  # 2-d input
    check_error(conv(padding="full"), randn(1, 2, 5, 5), randn(3, 2, 3, 3))
    check_error(conv(padding="same", stride=2), randn(1, 2, 5, 5), randn(3, 2, 3, 3))
    check_error(lambda lib: lib.nn.Conv2d(4, 6, 3, groups=3))
    check_error(lambda lib: lib.nn.Conv2d(4, 6, 3, padding="same", stride=2))
    check_error(lambda lib: lib.nn.Conv2d(4, 6, 3, padding_mode="mirror"))


def test_pool_errors():
    check_error(lambda lib, x: lib.nn.functional.max_pool2d(x, 3, padding=2), randn(1, 2, 5, 5))
    check_error(lambda lib, x: lib.nn.functional.avg_pool2d(x, 3, padding=2), randn(1, 2, 5, 5))
    check_error(lambda lib, x: lib.nn.functional.max_pool2d(x, 3), randn(1, 2, 2, 2))
    check_error(lambda lib, x: lib.nn.functional.max_pool2d(x, 2), randn(2, 5))
