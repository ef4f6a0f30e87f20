"""DDPG-style actor/critic updates on a one-step control task.

The reward of action a in state s is -(a - best_action(s))**2. The critic
learns Q(s, a) from actions the actor proposed, read through .detach() plus
exploration noise, so the critic update never reaches the actor. The actor
then maximizes critic(s, actor(s)): that gradient flows through the critic
into the actor, but only the actor's optimizer steps.

Run: python examples/ddpg_actor_critic.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim

STATE_WEIGHTS = np.array([[0.5], [-0.3]], dtype=np.float32)


def best_action(states: torch.Tensor) -> torch.Tensor:
    """Return the reward-maximizing action of each state."""
    return torch.tanh(states @ torch.from_numpy(STATE_WEIGHTS))


def reward(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Return the reward of taking actions in states."""
    return -(actions - best_action(states)) ** 2


class Critic(nn.Module):
    """Estimate Q(s, a) from the concatenated state and action."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 1))

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([states, actions], dim=1))


def critic_step(actor: nn.Module, critic: Critic, critic_opt: optim.Optimizer,
                states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Fit the critic to the rewards of noisy actor actions; return its loss."""
    actions = actor(states).detach() + noise
    critic_opt.zero_grad()
    loss = nn.functional.mse_loss(critic(states, actions), reward(states, actions))
    loss.backward()
    critic_opt.step()
    return loss


def actor_step(actor: nn.Module, critic: Critic, actor_opt: optim.Optimizer,
               states: torch.Tensor) -> torch.Tensor:
    """Move the actor toward actions the critic values more; return its loss."""
    actor_opt.zero_grad()
    loss = -critic(states, actor(states)).mean()
    loss.backward()
    actor_opt.step()
    return loss


def action_error(actor: nn.Module, states: torch.Tensor) -> float:
    """Return the mean distance between the actor's actions and the best actions."""
    with torch.no_grad():
        return (actor(states) - best_action(states)).abs().mean().item()


def main() -> None:
    torch.manual_seed(0)
    actor = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1), nn.Tanh())
    critic = Critic()
    actor_opt = optim.Adam(actor.parameters(), lr=1e-3)
    critic_opt = optim.Adam(critic.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    eval_states = torch.from_numpy(rng.standard_normal((256, 2)).astype(np.float32))
    print(f"initial_action_error={action_error(actor, eval_states):.4f}")

    critic_never_reached_actor = True
    actor_step_left_critic_unchanged = True
    for _ in range(300):
        states = torch.from_numpy(rng.standard_normal((64, 2)).astype(np.float32))
        noise = torch.from_numpy(0.3 * rng.standard_normal((64, 1)).astype(np.float32))
        actor_opt.zero_grad(set_to_none=True)
        critic_loss = critic_step(actor, critic, critic_opt, states, noise)
        critic_never_reached_actor &= all(p.grad is None for p in actor.parameters())

        critic_before = [p.detach().numpy().copy() for p in critic.parameters()]
        actor_step(actor, critic, actor_opt, states)
        actor_step_left_critic_unchanged &= all(
            np.array_equal(before, p.detach().numpy())
            for before, p in zip(critic_before, critic.parameters()))

    print(f"final_critic_loss={critic_loss.item():.5f}")
    print(f"final_action_error={action_error(actor, eval_states):.4f}")
    print(f"critic_step_actor_grad_is_none={critic_never_reached_actor}")
    print(f"actor_step_critic_unchanged={actor_step_left_critic_unchanged}")


if __name__ == "__main__":
    main()
