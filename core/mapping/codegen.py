"""The code Jinja generates for splice templates, with the runtime's bounds built in.

:class:`BoundedCodeGenerator` changes a few things of Jinja's compiler and nothing else:

* ``a ~ b`` calls ``environment.splice_concat`` (every part must be data; the result is bounded)
  instead of joining ``str()`` of each part, and ``x[a:b]`` calls ``environment.splice_slice``
  (a slice builds a value: it is counted);
* what each output statement writes passes ``environment.splice_out``, which counts what a
  render wrote;
* nothing but template text is evaluated at compile time (no constant folding of output
  expressions: with the optimizer off as well, ``splice validate`` never runs template code);
* :func:`count_loops` wraps the iterable of every ``{% for %}`` so each iteration costs a step.
"""

from __future__ import annotations

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

LOOP = "splice loop"  # internal filter name (a space: no template can name it)


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator with bounded ``~`` and counted output."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.splice_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.splice_slice(")  # Jinja subscripts slices directly
        self.visit(node.node, frame)
        self.write(", slice(")
        for i, part in enumerate((node.arg.start, node.arg.stop, node.arg.step)):
            if i:
                self.write(", ")
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
        self.write("))")

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        """Like Jinja's, but only template text is constant, and what one output statement
        writes passes ``environment.splice_out`` (one call per statement, not per piece)."""
        if frame.require_output_check:
            if self.has_known_extends:
                return
            self.writeline("if parent_template is None:")
            self.indent()
        finalize = self._make_finalize()
        body: list[list[str] | nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                text = str(child.as_const(frame.eval_ctx))
                if body and isinstance(body[-1], list):
                    body[-1].append(text)
                else:
                    body.append([text])
            else:
                body.append(child)
        if frame.buffer is not None:
            self.writeline(f"{frame.buffer}.extend(environment.splice_out((")
            self.indent()
        for item in body:
            if isinstance(item, list):
                value = repr("".join(item))
                if frame.buffer is None:
                    self.writeline(f"yield environment.splice_out(({value},))[0]")
                else:
                    self.writeline(value + ",")
                continue
            if frame.buffer is None:
                self.writeline("yield environment.splice_out((", item)
            else:
                self.newline(item)
            self._output_child_pre(item, frame, finalize)
            self.visit(item, frame)
            self._output_child_post(item, frame, finalize)
            self.write("," if frame.buffer is not None else ",))[0]")
        if frame.buffer is not None:
            self.outdent()
            self.writeline(")))")
        if frame.require_output_check:
            self.outdent()


def count_loops(tree: nodes.Node) -> None:
    """Wrap the iterable of every ``{% for %}`` of ``tree`` in the step-counting filter."""
    for loop in tree.find_all(nodes.For):
        if isinstance(loop.iter, nodes.Filter) and loop.iter.name == LOOP:
            continue
        loop.iter = nodes.Filter(loop.iter, LOOP, [], [], None, None, lineno=loop.lineno)


def needs_budget(tree: nodes.Node) -> bool:
    """Whether a template can loop, call, filter or build values (operators, ``~``, slices):
    only templates that read plain references (``{{ trigger.id }}``) render without a budget."""
    kinds = (nodes.For, nodes.Call, nodes.Filter, nodes.Macro, nodes.CallBlock,
             nodes.FilterBlock, nodes.BinExpr, nodes.Concat, nodes.Slice)
    return any(True for _ in tree.find_all(kinds))
