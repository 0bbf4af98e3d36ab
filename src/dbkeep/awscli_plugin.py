"""AWS CLI v1 plugin, named in ``DIR/config`` under ``[plugins]``.

AWS CLI v1 replaces the endpoint of ``aws rds …`` in us-east-1 with ``https://rds.amazonaws.com``
(its "SSL common name" customisation) unless ``--endpoint-url`` is on the command line, which
would send dbkeep's users to AWS despite ``endpoint_url`` in the config file. This plugin drops
that override, so the configured endpoint applies to every service as it does in botocore.
It imports nothing from dbkeep and is safe to load in any AWS CLI v1 process.
"""


def awscli_initialize(cli):  # noqa: ARG001 - the AWS CLI's plugin entry point
    try:
        from awscli.customizations import overridesslcommonname
    except ImportError:  # a CLI without the customisation: nothing to undo
        return
    for service in ("rds", "docdb", "neptune"):
        overridesslcommonname.SSL_COMMON_NAMES.pop(service, None)
