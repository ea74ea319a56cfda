"""The one seeding function: deterministic kernels switched on, without loading the compiler."""

from __future__ import annotations

from fresh_process import last_line


def test_seed_everything_turns_on_deterministic_kernels_without_importing_the_compiler():
    """In a fresh process: the flag torch reads is set (warn-only, as before), and torch's
    compiler (inductor, about a second to import) is not loaded just to set its own flag."""
    code = (
        "import sys, torch\n"
        "from eeg2bold.training.seed import seed_everything\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "seed_everything(7)\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "print('inductor' if 'torch._inductor' in sys.modules else 'no inductor')\n"
    )
    assert last_line(code) == "no inductor"
