"""Faults injected for real: a run moved to another device, two trainers on one run folder, NaN
weights, a full disk, a SIGTERM, a killed best/ save, malformed run files, overwrites.

Each test makes the fault happen (a real second process, a real NaN gradient, a real full tmpfs
where the machine lets the test mount one) and checks that nothing was lost and that the user saw
one line, not a traceback.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from cyclegan.train.step import Models, Optimizers



# --------------------------------------------------------------------------- 1. a run moves to another device

def _optimizers_after_one_step(models: Models, fused: bool | None) -> Optimizers:
    opt = Optimizers(*(torch.optim.Adam(itertools.chain(a.parameters(), b.parameters()), 1e-3, fused=fused)
                       for a, b in ((models.G_AB, models.G_BA), (models.D_A, models.D_B))))
    for optimizer in (opt.G, opt.D):
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.full_like(p, 0.01)
        optimizer.step()
    return opt


def _assert_adam_policy(optimizer: torch.optim.Optimizer) -> None:
    """torch's own placement for the state it creates: step float32 on the parameter's device when
    fused, a float32 CPU scalar otherwise; the moments on the parameter's device, in its dtype."""
    for group in optimizer.param_groups:
        fused = bool(group.get("fused"))
        for p in group["params"]:
            state = optimizer.state[p]
            assert state["step"].dtype == torch.float32
            assert state["step"].device == (p.device if fused else torch.device("cpu"))
            for key in ("exp_avg", "exp_avg_sq"):
                assert state[key].device == p.device and state[key].dtype == p.dtype


@pytest.mark.parametrize("saved_dtype", [torch.float32, torch.float64])
def test_an_unfused_optimizer_state_resumes_into_a_fused_optimizer(config, saved_dtype):
    """A CPU run (unfused Adam) resumed where Adam is fused: the state follows the new optimizer's policy.

    float64: torch's unfused Adam keeps ``step`` in float64 under a float64 default dtype, and
    ``load_state_dict`` would hand that on to the fused kernel unchanged.
    """
    torch.manual_seed(0)
    saved_models = Models.build(config, torch.device("cpu"))
    saved = _optimizers_after_one_step(saved_models, fused=None)
    states = [copy.deepcopy(o.state_dict()) for o in (saved.G, saved.D)]  # load shares tensors otherwise
    for state in states:
        for value in state["state"].values():
            value["step"] = value["step"].to(saved_dtype)

    models = Models.build(config, torch.device("cpu"))
    for name, net in models.named().items():
        net.load_state_dict(saved_models.named()[name].state_dict())
    fused = Optimizers(*(torch.optim.Adam(itertools.chain(a.parameters(), b.parameters()), 1e-3, fused=True)
                         for a, b in ((models.G_AB, models.G_BA), (models.D_A, models.D_B))))
    fused.load_state_dict(*states)
    for optimizer in (fused.G, fused.D):
        assert all(group["fused"] for group in optimizer.param_groups)  # this device's choice is kept
        _assert_adam_policy(optimizer)

    # and the next step continues the saved one: fused and unfused Adam agree to rounding
    for opt, nets in ((saved, saved_models), (fused, models)):
        for p in nets.G_AB.parameters():
            p.grad = torch.full_like(p, -0.02)
        for p in nets.G_BA.parameters():
            p.grad = torch.zeros_like(p)
        opt.G.step()
    for a, b in zip(saved_models.G_AB.parameters(), models.G_AB.parameters()):
        torch.testing.assert_close(a, b)


def test_a_fused_state_resumes_into_an_unfused_optimizer(config):
    """The other way (a GPU run resumed on a CPU): ``step`` goes back to a CPU float32 scalar."""
    models = Models.build(config, torch.device("cpu"))
    fused = _optimizers_after_one_step(models, fused=True)
    plain = Optimizers(*(torch.optim.Adam(itertools.chain(a.parameters(), b.parameters()), 1e-3)
                         for a, b in ((models.G_AB, models.G_BA), (models.D_A, models.D_B))))
    plain.load_state_dict(fused.G.state_dict(), fused.D.state_dict())
    for optimizer in (plain.G, plain.D):
        assert not any(group["fused"] for group in optimizer.param_groups)
        _assert_adam_policy(optimizer)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_run_resumes_on_cuda_and_steps(config):
    """The reported crash: a CPU run's state in CUDA's fused Adam, then one real step."""
    cpu_models = Models.build(config, torch.device("cpu"))
    cpu = _optimizers_after_one_step(cpu_models, fused=None)
    cuda = torch.device("cuda")
    models = Models.build(config, cuda)
    for name, net in models.named().items():
        net.load_state_dict(cpu_models.named()[name].state_dict())
    opt = Optimizers.build(models, config)  # fused on CUDA
    opt.load_state_dict(cpu.G.state_dict(), cpu.D.state_dict())
    for optimizer in (opt.G, opt.D):
        _assert_adam_policy(optimizer)
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.full_like(p, 0.01)
        optimizer.step()
    torch.cuda.synchronize()
    assert all(torch.isfinite(p).all() for p in models.G_AB.parameters())
