"""A conformance suite every Rayfine runtime plugin must pass, shipped as a pytest plugin.

Run it against any installed runtime, including your own::

    pytest --pyargs rayfine_core.testing --rayfine-runtime NAME

The plugin (entry point ``pytest11: rayfine``) adds ``--rayfine-runtime`` and
the fixtures ``rayfine_runtime`` and ``rayfine_image``.
"""
