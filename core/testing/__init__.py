"""The conformance suite a connector plugin runs in its own tests (``splice.testing``).

Subclass :class:`ConformanceSuite` in a test module and name the connector; pytest collects
the four checks as tests::

    from splice.testing import ConformanceSuite

    class TestAcmeConformance(ConformanceSuite):
        connector = "acme"                      # an installed plugin, or:
        # manifest = Path(__file__).parents[1] / "splice_acme" / "manifest.yaml"
        # sandbox = "splice_acme.sandbox:create_app"
        inputs = {"get_widget": {"widget_id": "w1"}}   # where an example input will not do

* the manifest passes ``splice connectors check`` (every problem at ``file:line:column``);
* every operation has a sample that validates against its output (a list operation's sample
  holds a record);
* every trigger's key, version, filter and cursor read fields its record schema has;
* the sandbox answers every operation with a 2xx response that validates.

The same checks are plain functions for other test runners: :func:`sample_problems`,
:func:`trigger_problems`, :func:`sandbox_problems` (each returns a list of problems, empty
when the connector conforms).
"""

from .conformance import (
    example_input,
    load_connector,
    sample_problems,
    sandbox_problems,
    trigger_problems,
)
from .suite import ConformanceSuite

__all__ = ["ConformanceSuite", "example_input", "load_connector", "sample_problems",
           "sandbox_problems", "trigger_problems"]
