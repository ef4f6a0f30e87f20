"""The jax.jit columns: each workload's step written functionally for JAX.

Imported only once JAX is known to be installed (see `columns.jax_jit`).
The whole step (forward, gradient with jax.grad, the optimizer update written
out with PyTorch's formulas) is one jitted function from (parameters,
optimizer state, data) to the new parameters and state and the loss. The
state's buffers are donated, so XLA may update them in place. Every step
waits for its loss, so a timed block does not end before its last step has.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import actor_critic, cnn, elementwise, mlp
from benchmarks.harness import Prepared

Params = list  # a list of jax arrays, in the order of the problem's weights


def jitted(update: Callable, state: Any, data: tuple, weights: Callable[[Any], Params]) -> Prepared:
    """A Prepared that runs `update(state, data) -> (state, loss)` under jax.jit, keeping the state between steps."""
    run = jax.jit(update, donate_argnums=0)
    current = [state]

    def step():
        current[0], loss = run(current[0], data)
        return loss.block_until_ready()

    return Prepared(step, weights=lambda: [np.asarray(w) for w in weights(current[0])])


# ---------------------------------------------------------------- optimizers, PyTorch's formulas


def sgd(params: Params, grads: Params, lr: float) -> Params:
    """Plain SGD: p - lr * grad."""
    return [p - lr * g for p, g in zip(params, grads)]


def sgd_momentum(params: Params, grads: Params, buffers: Params, lr: float,
                 momentum: float) -> tuple[Params, Params]:
    """SGD with momentum: buf = momentum * buf + grad (buffers start at zero, so the first buf is grad)."""
    buffers = [momentum * buf + g for buf, g in zip(buffers, grads)]
    return [p - lr * buf for p, buf in zip(params, buffers)], buffers


def adam_state(params: Params) -> tuple:
    """Adam's state: step count, first and second moments."""
    return jnp.zeros((), jnp.float32), [jnp.zeros_like(p) for p in params], [jnp.zeros_like(p) for p in params]


def adam(params: Params, grads: Params, state: tuple, lr: float) -> tuple[Params, tuple]:
    """Adam: bias-corrected moments, p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)."""
    beta1, beta2 = mlp.ADAM_BETAS
    count, means, squares = state
    count = count + 1
    means = [m + (1 - beta1) * (g - m) for m, g in zip(means, grads)]
    squares = [beta2 * v + (1 - beta2) * g * g for v, g in zip(squares, grads)]
    step_size = lr / (1 - beta1 ** count)
    bias_correction2_sqrt = jnp.sqrt(1 - beta2 ** count)
    params = [p - step_size * m / (jnp.sqrt(v) / bias_correction2_sqrt + mlp.ADAM_EPS)
              for p, m, v in zip(params, means, squares)]
    return params, (count, means, squares)


def _arrays(values) -> Params:
    return [jnp.asarray(value) for value in values]


def _dense(params: Params, x, hidden_activation=jax.nn.relu):
    """Linear layers (weights in (out, in) layout) with `hidden_activation` between them."""
    for i in range(0, len(params), 2):
        x = x @ params[i].T + params[i + 1]
        if i + 2 < len(params):
            x = hidden_activation(x)
    return x


# ---------------------------------------------------------------- W1, W2


def mlp_step(problem: mlp.MLPProblem) -> Prepared:
    """W1/W2: MLP, cross-entropy, SGD with momentum or Adam."""
    def loss_fn(params, x, y):
        log_probs = jax.nn.log_softmax(_dense(params, x))
        return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))

    def update(state, data):
        params, optimizer_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *data)
        if problem.optimizer == "sgd":
            params, optimizer_state = sgd_momentum(params, grads, optimizer_state, problem.lr, mlp.SGD_MOMENTUM)
        else:
            params, optimizer_state = adam(params, grads, optimizer_state, problem.lr)
        return (params, optimizer_state), loss

    params = _arrays(problem.weights)
    optimizer_state = [jnp.zeros_like(p) for p in params] if problem.optimizer == "sgd" else adam_state(params)
    data = (jnp.asarray(problem.x), jnp.asarray(problem.y.astype(np.int32)))  # JAX's default integers are 32-bit
    return jitted(update, (params, optimizer_state), data, weights=lambda state: state[0])


# ---------------------------------------------------------------- W3


def elementwise_step(problem: elementwise.ElementwiseProblem) -> Prepared:
    """W3: mean(gelu_tanh(x * w + b) ** 2), plain SGD."""
    def loss_fn(params, x):
        w, b = params
        return jnp.mean(jax.nn.gelu(x * w + b, approximate=True) ** 2)

    def update(params, data):
        loss, grads = jax.value_and_grad(loss_fn)(params, *data)
        return sgd(params, grads, problem.lr), loss

    return jitted(update, _arrays((problem.w, problem.b)), (jnp.asarray(problem.x),), weights=lambda state: state)


# ---------------------------------------------------------------- W4


def actor_critic_step(problem: actor_critic.ActorCriticProblem) -> Prepared:
    """W4: critic update onto a stop_gradient TD target, then actor update through the updated critic."""
    def actor(params, states):
        return jnp.tanh(_dense(params, states))

    def q_value(params, states, actions):
        return _dense(params, jnp.concatenate([states, actions], axis=1))

    def critic_loss_fn(critic, states, actions, target):
        return jnp.mean((q_value(critic, states, actions) - target) ** 2)

    def actor_loss_fn(actor_params, critic, states):
        return -jnp.mean(q_value(critic, states, actor(actor_params, states)))

    def update(state, data):
        actor_params, critic, actor_state, critic_state = state
        obs, action, reward, next_obs = data
        target = reward + actor_critic.GAMMA * jax.lax.stop_gradient(
            q_value(critic, next_obs, actor(actor_params, next_obs)))
        critic_loss, grads = jax.value_and_grad(critic_loss_fn)(critic, obs, action, target)
        critic, critic_state = adam(critic, grads, critic_state, actor_critic.LR)
        actor_loss, grads = jax.value_and_grad(actor_loss_fn)(actor_params, critic, obs)
        actor_params, actor_state = adam(actor_params, grads, actor_state, actor_critic.LR)
        return (actor_params, critic, actor_state, critic_state), critic_loss + actor_loss

    actor_params, critic = _arrays(problem.actor_weights), _arrays(problem.critic_weights)
    state = (actor_params, critic, adam_state(actor_params), adam_state(critic))
    data = tuple(jnp.asarray(a) for a in (problem.obs, problem.action, problem.reward, problem.next_obs))
    return jitted(update, state, data, weights=lambda state: [*state[0], *state[1]])


# ---------------------------------------------------------------- W5


def cnn_step(problem: cnn.CNNProblem) -> Prepared:
    """W5: conv, ReLU, 2x2 max pool, conv, ReLU, linear; cross-entropy; SGD with momentum."""
    def conv(x, w, b):
        return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1))) + b[None, :, None, None]

    def loss_fn(params, x, y):
        w1, b1, w2, b2, w3, b3 = params
        h = jax.nn.relu(conv(x, w1, b1))
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = jax.nn.relu(conv(h, w2, b2)).reshape(x.shape[0], -1)
        log_probs = jax.nn.log_softmax(h @ w3.T + b3)
        return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))

    def update(state, data):
        params, buffers = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *data)
        return sgd_momentum(params, grads, buffers, cnn.LR, mlp.SGD_MOMENTUM), loss

    params = _arrays(problem.weights)
    data = (jnp.asarray(problem.x), jnp.asarray(problem.y.astype(np.int32)))
    return jitted(update, (params, [jnp.zeros_like(p) for p in params]), data, weights=lambda state: state[0])
