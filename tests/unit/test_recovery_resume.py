"""A recovery interrupted between epochs continues from its saved state to the result an
uninterrupted recovery gives (agents.app.finalize.recovered_model with ``states``)."""

from __future__ import annotations

import pytest
import torch

from agents.app.finalize import recovered_model, recovery_state_file, saved_recovery
from envs.workloads.evaluation import TrainingState, finetune
from envs.workloads.recovery import RecoveryRecipe
from tests.conftest import tiny_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: 32 images in batches of 8: 4 steps per epoch, 12 in all; distilled, the masks reached
#: gradually over the first half, flips and shifts: every piece of state a resume restores.
RECIPE = RecoveryRecipe(
    epochs=3, batch_size=8, lr=0.05, distill=True, gradual=0.5, hflip=True, crop=1, seed=3
)
STEPS_PER_EPOCH = 4


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


class Stop(KeyboardInterrupt):
    """Stands for Ctrl-C in the middle of an epoch."""


def _stop_at(step: int, seen: list[int]):
    def on_step(done: int) -> None:
        seen.append(done)
        if done == step:
            raise Stop

    return on_step


@pytest.fixture
def task():
    return tiny_task()


@pytest.fixture
def choice(task):
    return [len(d.levels) // 2 for d in task.decisions]


def test_a_recovery_stopped_mid_epoch_resumes_from_the_last_epoch_to_the_same_model(
    task, choice, tmp_path
):
    whole = recovered_model(task, choice, RECIPE)

    seen: list[int] = []
    with pytest.raises(Stop):
        recovered_model(task, choice, RECIPE, states=tmp_path, on_step=_stop_at(6, seen))
    assert seen == [1, 2, 3, 4, 5, 6]
    state = saved_recovery(recovery_state_file(tmp_path, choice, RECIPE), choice, RECIPE)
    assert state is not None and (state.epoch, state.step) == (1, STEPS_PER_EPOCH)

    seen.clear()
    again = recovered_model(task, choice, RECIPE, states=tmp_path, on_step=seen.append)
    assert seen == list(range(STEPS_PER_EPOCH + 1, 3 * STEPS_PER_EPOCH + 1))  # epoch 1 kept
    assert again.after == whole.after and again.before == whole.before
    expected = _weights(whole.model)
    for name, value in _weights(again.model).items():
        assert torch.equal(value, expected[name]), name


def test_a_finished_recovery_found_again_trains_no_step(task, choice, tmp_path):
    first = recovered_model(task, choice, RECIPE, states=tmp_path)
    seen: list[int] = []
    again = recovered_model(task, choice, RECIPE, states=tmp_path, on_step=seen.append)
    assert seen == []
    assert again.after == first.after


def test_a_state_of_another_policy_recipe_or_a_damaged_file_is_not_used(task, choice, tmp_path):
    recovered_model(task, choice, RECIPE, states=tmp_path)
    path = recovery_state_file(tmp_path, choice, RECIPE)
    other = [c + 1 for c in choice]
    assert recovery_state_file(tmp_path, other, RECIPE) != path
    assert saved_recovery(path, other, RECIPE) is None
    assert saved_recovery(path, choice, RecoveryRecipe(epochs=4, batch_size=8)) is None
    assert saved_recovery(path, choice, RECIPE) is not None

    path.write_bytes(b"not a torch file")
    assert saved_recovery(path, choice, RECIPE) is None
    seen: list[int] = []
    recovered_model(task, choice, RECIPE, states=tmp_path, on_step=seen.append)
    assert seen[0] == 1  # started anew, and saved a readable state again
    assert saved_recovery(path, choice, RECIPE) is not None


def test_finetune_refuses_a_state_of_another_length():
    model = torch.nn.Linear(4, 2)
    data = (torch.randn(16, 4), torch.randint(0, 2, (16,)))
    states: list[TrainingState] = []
    finetune(model, data, steps=4, batch_size=8, save_state=states.append, schedule="cosine")
    assert [(s.epoch, s.step) for s in states] == [(1, 2), (2, 4)]
    with pytest.raises(ValueError, match="4-step run, not 6"):
        finetune(model, data, steps=6, batch_size=8, start=states[0], schedule="cosine")
    # The saved momentum is a copy, not the optimiser's live buffer.
    first = states[0].optimizer["state"][0]["momentum_buffer"]
    assert not torch.equal(first, states[1].optimizer["state"][0]["momentum_buffer"])
