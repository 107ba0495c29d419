# examples/my_passes.py: graphmill optimize m.onnx -o o.onnx --load-passes examples/my_passes.py -p my-fusions
from graphmill.ir.rewrite import Op, Var, Const, Rule, EXACT
from graphmill.passes import register_pass
from graphmill.passes.rewrite_pass import RewritePass

# Mul(x, 2) -> Add(x, x): a user-written rule
double = Rule(
    name="mul-by-two",
    pattern=Op("Mul", Var("x"), Const("two"), commutative=True),
    check=lambda m: None if m.const("two").shape == () and m.const("two") == 2 else "the constant is not 2",
    replace=lambda m, r: r.op("Add", m["x"], m["x"]),
    exactness=EXACT,
)

@register_pass
class MyFusions(RewritePass):
    """Strength reductions of my model family."""
    name = "my-fusions"
    rules = (double,)
