"""An AWS CLI plugin that gives the command line the profile's ``endpoint_url``, for CLIs that
do not read it from the config file themselves: AWS CLI v2 before 2.13 (Debian 12's ``awscli``
is 2.9). ``dbkeep up`` copies this file, standalone (it imports nothing of dbkeep), to
``DIR/awscli-plugins/dbkeep_endpoint.py`` and names it in ``DIR/config-plugin``::

    [plugins]
    cli_legacy_plugin_path = DIR/awscli-plugins
    dbkeep_endpoint = dbkeep_endpoint

AWS CLI v2 puts ``cli_legacy_plugin_path`` on ``sys.path`` and imports the module. It is not in
``DIR/config`` itself: AWS CLI v1 imports every value under ``[plugins]`` as a module (the path
too) and stops when one fails, and v2 from 2.13 on needs no plugin.

The handler runs once the top-level options are parsed (``session-initialized``): when no
``--endpoint-url`` was given it sets the profile's ``endpoint_url``, so every command's client,
whatever its service, goes to that endpoint.
"""


def awscli_initialize(cli):
    cli.register("session-initialized", endpoint_from_config)


def endpoint_from_config(session, parsed_args, **kwargs):
    if getattr(parsed_args, "endpoint_url", None) is None:
        url = session.get_scoped_config().get("endpoint_url")
        if url:
            parsed_args.endpoint_url = url
