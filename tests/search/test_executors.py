"""How a trial's fault is told: its reason names the line of code that failed."""
from __future__ import annotations

import json

from hypersweep.models.errors import UserError
from hypersweep.search.executors import failure_reason


def test_a_faults_reason_names_the_deepest_line_outside_the_libraries():
    """A model of one's own calling torch (or any library) wrongly: the reason named
    the library's file (`rnn.py:1114`); it names the caller's line."""
    def parse():
        return json.loads("{")          # raises inside the standard library

    try:
        parse()
    except ValueError as e:
        reason = failure_reason(e)
    line = parse.__code__.co_firstlineno + 1
    assert reason.startswith("JSONDecodeError: ")
    assert reason.endswith(f"(test_executors.py:{line})")


def test_a_user_errors_reason_is_its_message_alone():
    assert failure_reason(UserError("params.dropout: must be in [0, 1), got 1.5")) == (
        "params.dropout: must be in [0, 1), got 1.5")


def test_a_fault_inside_a_torch_layer_names_the_layer_and_the_call():
    """An nn.Sequential of one's own has no line of its own: the reason named only
    the training loop's line, as if hypersweep had failed."""
    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv2d(1, 4, 3))

    def train():
        return net(torch.zeros(2, 64))      # flat vectors into a conv layer

    try:
        train()
    except RuntimeError as e:
        reason = failure_reason(e)
    line = train.__code__.co_firstlineno + 1
    assert reason.startswith("RuntimeError: Expected 3D (unbatched) or 4D (batched) input")
    assert reason.endswith(f"(in a layer of the model, torch.nn conv.py; called at "
                           f"test_executors.py:{line})")


def test_a_sys_exit_in_a_trial_s_code_fails_that_trial_naming_its_line():
    """A model that calls sys.exit (argparse does, on a command line it cannot parse)
    ended the whole serial study with that status and no word."""
    from hypersweep.models.trial import TrialState
    from hypersweep.search.executors import run_guarded

    def train(spec, report):
        report(1, {"train_loss": 1.0})
        raise SystemExit(3)

    result = run_guarded(train, None, lambda step, metrics: False)
    line = train.__code__.co_firstlineno + 2
    assert result.state is TrialState.FAIL and result.epochs == 1
    assert result.reason == ("ExitInModel: the model's code called sys.exit(3) "
                             f"(test_executors.py:{line})")
