import numpy as np
import pytest
import torch

from moetheory import primer


def test_target_pieces_and_jumps():
    x = torch.tensor([-0.875, -0.25, 0.25, 0.75, -0.5, 0.0, 0.5])
    want = [0.5 * np.sin(4 * np.pi * -0.875), 1.0, 0.0, -0.5, 1.0, -1.0, -0.5]
    torch.testing.assert_close(primer.piecewise_target(x), torch.tensor(want, dtype=torch.float32))


def test_dense_widths_match_parameter_counts():
    config = primer.PrimerConfig(steps=3, n_seeds=2, n_train=64, n_test=33)
    result = primer.run(config, device="cpu")
    # Equal active parameters within the rounding of the width (4 parameters per dense unit).
    assert 0 <= result.active_parameters["MoE"] - result.parameters["dense (same active)"] < 4
    assert 0 <= result.parameters["MoE"] - result.parameters["dense (same total)"] < 4
    assert result.expert_choice.shape == (2, 33) and result.expert_outputs.shape == (2, 4, 33)
    assert set(result.metrics()) == {"MoE", "dense (same active)", "dense (same total)"}


def test_training_reduces_loss_for_every_model_and_seed():
    result = primer.run(primer.PrimerConfig(steps=200, n_seeds=2, n_train=256, n_test=65), device="cpu")
    for losses in result.losses.values():
        assert (losses[:, -1] < 0.8 * losses[:, 0]).all()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("k", 5, r"k must be an integer in \[1, 4\]"),
    ("lr", -1.0, "lr must be a finite number > 0.0"),
    ("balance", float("inf"), "balance must be a finite number >= 0.0"),
    ("n_seeds", 0, "n_seeds must be an integer >= 1"),
    ("schedule", "linear", "schedule must be one of"),
])
def test_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        primer.PrimerConfig(**{field: value})


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_schedule_of_the_steps(schedule):
    """The cosine default takes Adam's step from lr down to lr (1 + cos(pi (T-1)/T)) / 2 at the last of T steps
    (about lr pi^2 / (4 T^2)); "constant" keeps lr."""
    config = primer.PrimerConfig(steps=50, lr=0.02, schedule=schedule)
    opt, decay = primer.optimiser(torch.nn.Linear(2, 1), config)
    used = []
    for _ in range(config.steps):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        if decay is not None:
            decay.step()
    t = np.arange(config.steps)
    want = 0.02 * (1 + np.cos(np.pi * t / config.steps)) / 2 if schedule == "cosine" else np.full(config.steps, 0.02)
    np.testing.assert_allclose(used, want, rtol=1e-9, atol=1e-15)
