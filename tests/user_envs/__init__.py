"""A small environment registered by a package of its own, as a user's would be: the tests use
it as 'user_envs:UserLine-v0' (Gymnasium's module-prefixed id), with --env_kwargs."""
import gymnasium as gym
import numpy as np


class LineEnv(gym.Env):
    """Move a point on a line towards `target`; reward minus the distance."""

    def __init__(self, target=0.0):
        self.target = float(target)
        self.observation_space = gym.spaces.Box(-10., 10., (2,), np.float64)
        self.action_space = gym.spaces.Box(-1., 1., (1,), np.float64)
        self.x = 0.

    def _obs(self):
        return np.array([self.x, self.target - self.x])

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-2, 2))
        return self._obs(), {}

    def step(self, action):
        self.x = float(np.clip(self.x + 0.2 * np.clip(action[0], -1, 1), -10, 10))
        return self._obs(), -abs(self.target - self.x), False, False, {}


gym.register("UserLine-v0", entry_point="user_envs:LineEnv", max_episode_steps=25)


class NanLineEnv(LineEnv):
    """LineEnv whose observations turn NaN from the third step on: a broken user environment
    (a one-step probe passes; sampling must catch it)."""

    def reset(self, seed=None, options=None):
        self.t = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, info = super().step(action)
        return (obs * np.nan if self.t >= 3 else obs), r, term, trunc, info


gym.register("NanLine-v0", entry_point="user_envs:NanLineEnv", max_episode_steps=25)
