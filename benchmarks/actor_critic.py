"""W4: a DDPG-style actor/critic step: both updates in one step, with a detached TD target.

actor: obs (16) -> 64 -> ReLU -> 4 -> tanh (the action); critic: [obs, action]
(20) -> 64 -> ReLU -> 1 (its value Q). On a fixed batch of 64 transitions
(obs, action, reward, next_obs), one step:

1. target = reward + gamma * Q(next_obs, actor(next_obs)).detach(): the
   critic regresses onto the target, it is not trained through it;
2. critic update: mse(Q(obs, action), target), critic optimizer step;
3. actor update: -mean(Q(obs, actor(obs))) with the updated critic; the
   gradient flows through the critic into the actor, only the actor's
   optimizer steps. The critic gradients this leaves behind are cleared by
   the critic's zero_grad before its next backward, as in a DDPG loop.

Both optimizers are Adam (lr 1e-3), DDPG's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from benchmarks import columns
from benchmarks.harness import Prepared, Workload
from benchmarks.mlp import AdamUpdate, linear_weights

BATCH = 64
OBS = 16
ACTION = 4
HIDDEN = 64
GAMMA = 0.99
LR = 1e-3


@dataclass(frozen=True)
class ActorCriticProblem:
    """Initial weights of both networks and one fixed batch of transitions."""

    actor_weights: tuple[np.ndarray, ...]  # W1 (64, 16), b1, W2 (4, 64), b2: Linear layers' (out, in) layout
    critic_weights: tuple[np.ndarray, ...]  # W1 (64, 20), b1, W2 (1, 64), b2
    obs: np.ndarray  # (BATCH, OBS)
    action: np.ndarray  # (BATCH, ACTION), the actions stored with the transitions
    reward: np.ndarray  # (BATCH, 1)
    next_obs: np.ndarray  # (BATCH, OBS)


def make_problem(seed: int = 0) -> ActorCriticProblem:
    """Weights drawn like Linear layers' default init, standard-normal observations and rewards, from `seed`."""
    rng = np.random.default_rng(seed)
    actor_weights = linear_weights(rng, (OBS, HIDDEN, ACTION))
    critic_weights = linear_weights(rng, (OBS + ACTION, HIDDEN, 1))
    obs = rng.standard_normal((BATCH, OBS), dtype=np.float32)
    action = rng.uniform(-1, 1, (BATCH, ACTION)).astype(np.float32)
    reward = rng.standard_normal((BATCH, 1), dtype=np.float32)
    next_obs = rng.standard_normal((BATCH, OBS), dtype=np.float32)
    return ActorCriticProblem(tuple(actor_weights), tuple(critic_weights), obs, action, reward, next_obs)


# ---------------------------------------------------------------- PyTorch-style code


def build_pytorch_style(torch: ModuleType, problem: ActorCriticProblem) -> Prepared:
    """The step as a PyTorch user writes it; `torch` is tracegrad or PyTorch itself."""
    nn = torch.nn
    actor = nn.Sequential(nn.Linear(OBS, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, ACTION), nn.Tanh())
    critic = nn.Sequential(nn.Linear(OBS + ACTION, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))
    columns.copy_parameters(torch, actor.parameters(), problem.actor_weights)
    columns.copy_parameters(torch, critic.parameters(), problem.critic_weights)
    obs, action, reward, next_obs = (torch.from_numpy(data) for data in
                                     (problem.obs, problem.action, problem.reward, problem.next_obs))
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=LR)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=LR)

    def q_value(states, actions):
        return critic(torch.cat([states, actions], dim=1))

    def step():
        target = reward + GAMMA * q_value(next_obs, actor(next_obs)).detach()
        critic_loss = nn.functional.mse_loss(q_value(obs, action), target)
        critic_optimizer.zero_grad()
        critic_loss.backward()
        critic_optimizer.step()
        actor_loss = -q_value(obs, actor(obs)).mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        return critic_loss.detach() + actor_loss.detach()

    return Prepared(step, weights=lambda: [p.detach().numpy() for p in [*actor.parameters(),
                                                                          *critic.parameters()]])


# ---------------------------------------------------------------- hand-written NumPy


class NumpyActorCriticStep:
    """The same step by hand: forward passes, manual backward, Adam written out; float32, preallocated buffers.

    The critic's input [states, actions] is one (BATCH, OBS + ACTION) buffer
    that both parts are copied into, as torch.cat does. The actor update only
    needs dLoss/daction from the critic, so the critic's parameter gradients
    are not computed there (a PyTorch user's backward computes and discards them).
    """

    def __init__(self, problem: ActorCriticProblem) -> None:
        self.problem = problem
        self.actor = [w.copy() for w in problem.actor_weights]
        self.critic = [w.copy() for w in problem.critic_weights]
        self.actor_grads = [np.empty_like(w) for w in self.actor]
        self.critic_grads = [np.empty_like(w) for w in self.critic]
        self.actor_hidden = np.empty((BATCH, HIDDEN), np.float32)
        self.actions = np.empty((BATCH, ACTION), np.float32)
        self.critic_input = np.empty((BATCH, OBS + ACTION), np.float32)
        self.critic_hidden = np.empty((BATCH, HIDDEN), np.float32)
        self.q = np.empty((BATCH, 1), np.float32)
        self.target = np.empty((BATCH, 1), np.float32)
        self.d_q = np.empty((BATCH, 1), np.float32)
        self.d_critic_hidden = np.empty((BATCH, HIDDEN), np.float32)
        self.d_actions = np.empty((BATCH, ACTION), np.float32)
        self.tanh_slope = np.empty((BATCH, ACTION), np.float32)
        self.d_actor_hidden = np.empty((BATCH, HIDDEN), np.float32)
        self.mask = np.empty((BATCH, HIDDEN), bool)
        self.actor_update = AdamUpdate(self.actor, LR)
        self.critic_update = AdamUpdate(self.critic, LR)

    def step(self) -> np.float32:
        """One step (critic update, then actor update); returns the sum of both losses before their updates."""
        p = self.problem
        # 1. the TD target: a constant for the critic's regression
        self._critic_forward(p.next_obs, self._actor_forward(p.next_obs))
        np.multiply(self.q, np.float32(GAMMA), out=self.target)
        self.target += p.reward
        # 2. critic: mse(Q(obs, action), target)
        self._critic_forward(p.obs, p.action)
        np.subtract(self.q, self.target, out=self.d_q)
        critic_loss = np.vdot(self.d_q, self.d_q) * np.float32(1 / BATCH)
        self.d_q *= np.float32(2 / BATCH)
        self._critic_parameter_gradients()
        self.critic_update(self.critic_grads)
        # 3. actor: -mean(Q(obs, actor(obs))) through the updated critic
        self._critic_forward(p.obs, self._actor_forward(p.obs))
        actor_loss = -self.q.mean()
        self.d_q.fill(np.float32(-1 / BATCH))
        self._actor_parameter_gradients()
        self.actor_update(self.actor_grads)
        return critic_loss + actor_loss

    def _actor_forward(self, states: np.ndarray) -> np.ndarray:
        """actions = tanh(W2 relu(W1 states + b1) + b2); keeps the hidden layer for the backward."""
        weight1, bias1, weight2, bias2 = self.actor
        np.matmul(states, weight1.T, out=self.actor_hidden)
        self.actor_hidden += bias1
        np.maximum(self.actor_hidden, 0, out=self.actor_hidden)
        np.matmul(self.actor_hidden, weight2.T, out=self.actions)
        self.actions += bias2
        np.tanh(self.actions, out=self.actions)
        return self.actions

    def _critic_forward(self, states: np.ndarray, actions: np.ndarray) -> None:
        """q = W2 relu(W1 [states, actions] + b1) + b2; keeps input and hidden layer for the backward."""
        weight1, bias1, weight2, bias2 = self.critic
        self.critic_input[:, :OBS] = states
        self.critic_input[:, OBS:] = actions
        np.matmul(self.critic_input, weight1.T, out=self.critic_hidden)
        self.critic_hidden += bias1
        np.maximum(self.critic_hidden, 0, out=self.critic_hidden)
        np.matmul(self.critic_hidden, weight2.T, out=self.q)
        self.q += bias2

    def _critic_hidden_gradient(self) -> None:
        """d_critic_hidden = dLoss/d(pre-ReLU hidden) from d_q."""
        np.matmul(self.d_q, self.critic[2], out=self.d_critic_hidden)
        np.greater(self.critic_hidden, 0, out=self.mask)
        self.d_critic_hidden *= self.mask

    def _critic_parameter_gradients(self) -> None:
        grad_weight1, grad_bias1, grad_weight2, grad_bias2 = self.critic_grads
        np.matmul(self.d_q.T, self.critic_hidden, out=grad_weight2)
        np.sum(self.d_q, axis=0, out=grad_bias2)
        self._critic_hidden_gradient()
        np.matmul(self.d_critic_hidden.T, self.critic_input, out=grad_weight1)
        np.sum(self.d_critic_hidden, axis=0, out=grad_bias1)

    def _actor_parameter_gradients(self) -> None:
        """Backward from d_q through the critic's action inputs, then tanh, then the actor's layers."""
        grad_weight1, grad_bias1, grad_weight2, grad_bias2 = self.actor_grads
        self._critic_hidden_gradient()
        np.matmul(self.d_critic_hidden, self.critic[0][:, OBS:], out=self.d_actions)
        np.multiply(self.actions, self.actions, out=self.tanh_slope)  # tanh' = 1 - tanh^2
        np.subtract(np.float32(1), self.tanh_slope, out=self.tanh_slope)
        self.d_actions *= self.tanh_slope
        np.matmul(self.d_actions.T, self.actor_hidden, out=grad_weight2)
        np.sum(self.d_actions, axis=0, out=grad_bias2)
        np.matmul(self.d_actions, self.actor[2], out=self.d_actor_hidden)
        np.greater(self.actor_hidden, 0, out=self.mask)
        self.d_actor_hidden *= self.mask
        np.matmul(self.d_actor_hidden.T, self.problem.obs, out=grad_weight1)
        np.sum(self.d_actor_hidden, axis=0, out=grad_bias1)


def numpy_step(problem: ActorCriticProblem) -> Prepared:
    """The hand-written NumPy step."""
    model = NumpyActorCriticStep(problem)
    return Prepared(model.step, weights=lambda: [*model.actor, *model.critic])


# ---------------------------------------------------------------- the registry entries

IMPLEMENTATIONS = {
    "numpy": numpy_step,
    **columns.pytorch_style_columns(build_pytorch_style),
    "jax.jit": columns.jax_jit("actor_critic_step"),
}

WORKLOADS = [
    Workload("W4", f"DDPG-style actor/critic step: batch {BATCH}, actor {OBS}-{HIDDEN}-{ACTION} tanh, critic "
                   f"{OBS}+{ACTION}-{HIDDEN}-1, detached TD target, both Adam updates (lr {LR:g})",
             make_problem, IMPLEMENTATIONS,
             # Adam's first steps are grad / (|grad| + eps): where a gradient is near eps, float32 rounding
             # moves that element's step by ~1% of lr, whichever library computes it (as in W2).
             check_atol=0.05 * LR),
]
