"""AWS CLI v1's endpoint override for ``aws rds`` in us-east-1, undone for dbkeep's own CLI.

AWS CLI v1 replaces the endpoint of ``aws rds``, ``docdb`` and ``neptune`` in us-east-1 with
``https://rds.amazonaws.com`` (its "SSL common name" customisation) unless ``--endpoint-url`` is
on the command line, which would send dbkeep's users to AWS despite ``endpoint_url`` in the
config file. AWS CLI v2 and the SDKs honour ``endpoint_url``.

``DIR/config`` names no plugin: AWS CLI v1 imports every module named under ``[plugins]`` and
refuses to run when one is missing, so any CLI outside dbkeep's venv would fail on every
command. Instead ``make setup`` puts a ``.pth`` line in dbkeep's venv that calls
:func:`autoload`, which undoes the override in the venv's own ``aws`` process only (nothing is
imported in other processes). The module still offers ``awscli_initialize``, so a user may name
it under ``[plugins]`` in a config of their own for a CLI that can import ``dbkeep``.
"""

import os
import sys

SERVICES = ("rds", "docdb", "neptune")


def _undo_override() -> None:
    try:
        from awscli.customizations import overridesslcommonname
    except ImportError:  # a CLI without the customisation: nothing to undo
        return
    for service in SERVICES:
        overridesslcommonname.SSL_COMMON_NAMES.pop(service, None)


def awscli_initialize(cli):  # noqa: ARG001 - the AWS CLI's plugin entry point
    _undo_override()


def autoload() -> None:
    """From the venv's ``.pth`` line, at every interpreter start: act in the ``aws`` command only."""
    if os.path.basename(sys.argv[0] if sys.argv else "") == "aws":
        _undo_override()
