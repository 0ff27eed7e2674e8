"""A griffe extension that gives attrs classes their constructor in the API reference.

attrs writes ``__init__`` when the class is created, so static analysis sees none: the
reference would show no signature, and every documented parameter without its type
and as required.  This extension writes that ``__init__`` from the class body, as attrs
does:

- the fields are the annotated attributes (``ClassVar`` excluded) and the attributes
  assigned ``attrs.field()`` or ``attr.ib()``, after those of attrs base classes;
- ``init=False`` leaves a field out; ``kw_only=True`` (on the field or on the class)
  makes it keyword-only; a leading underscore is dropped from the parameter's name
  unless ``alias=`` names it;
- the default is ``default=``, the value assigned, or, for ``factory=`` and
  ``attrs.Factory(...)``, a call of the factory (``ExponentialBackoff()``); a method
  decorated with ``@<field>.default`` makes a default that is computed;
- the type is the attribute's annotation or, for a field with a converter of the
  package, what the converter takes (``Iterable[RateLimitPolicy]`` for a tuple).

A class with no base and no ``__init__`` shows the constructor it has, ``Name()``.

It also keeps private names out of signatures: a parameter annotated with a name that
starts with an underscore shows the public object the name is imported from
(``pyrate_limiter.Limiter``) or, for a private class of the package, no type at all.

``tests/test_docs_site.py`` checks the result against the runtime signatures.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

import griffe

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The decorators that make an attrs class, by canonical path.
ATTRS_DECORATORS = frozenset(
    {
        "attrs.define",
        "attrs.frozen",
        "attrs.mutable",
        "attr.s",
        "attr.attrs",
        "attr.define",
        "attr.frozen",
        "attr.mutable",
        "attr.dataclass",
    }
)

#: The calls that define a field.
FIELD_CALLS = frozenset({"attrs.field", "attr.field", "attr.ib", "attr.attrib"})

#: The calls that make a default from a factory.
FACTORY_CALLS = frozenset({"attrs.Factory", "attr.Factory"})

#: The old API (``attr.s``) collects only ``attr.ib()`` fields unless told otherwise.
OLD_API = frozenset({"attr.s", "attr.attrs"})


def _call_arguments(expr: griffe.ExprCall) -> dict[str, str | griffe.Expr]:
    """The keyword arguments of a call, by name."""
    return {
        argument.name: argument.value
        for argument in expr.arguments
        if isinstance(argument, griffe.ExprKeyword)
    }


def _is_true(value: str | griffe.Expr | None) -> bool:
    return str(value) == "True"


def _attrs_decorator(
    cls: griffe.Class,
) -> tuple[str, dict[str, str | griffe.Expr]] | None:
    """The canonical path and the arguments of the class's attrs decorator, if any."""
    for decorator in cls.decorators:
        value = decorator.value
        arguments: dict[str, str | griffe.Expr] = {}
        if isinstance(value, griffe.ExprCall):
            arguments = _call_arguments(value)
            value = value.function
        if isinstance(value, griffe.Expr) and value.canonical_path in ATTRS_DECORATORS:
            return value.canonical_path, arguments
    return None


def _field_call(attribute: griffe.Attribute) -> griffe.ExprCall | None:
    value = attribute.value
    if isinstance(value, griffe.ExprCall) and value.canonical_path in FIELD_CALLS:
        return value
    return None


def _converter_annotation(
    cls: griffe.Class, converter: str | griffe.Expr
) -> griffe.Expr | None:
    """What a converter of the package takes: the annotation of its first parameter."""
    if not isinstance(converter, griffe.Expr):
        return None
    try:
        function = cls.modules_collection[converter.canonical_path]
    except (KeyError, ValueError, AttributeError):  # a builtin (float) or out of reach
        return None
    if not isinstance(function, griffe.Function) or not function.parameters:
        return None
    annotation = next(iter(function.parameters)).annotation
    if not isinstance(annotation, griffe.Expr) or str(annotation) in {"object", "Any"}:
        return None  # says nothing that the field's own type does not say better
    return annotation


def _defaults_by_decorator(cls: griffe.Class) -> set[str]:
    """The fields whose default a method decorated ``@<field>.default`` computes."""
    names: set[str] = set()
    for member in cls.members.values():
        if member.is_alias or not isinstance(member, griffe.Function):
            continue
        for decorator in member.decorators:
            value = decorator.value
            if isinstance(value, griffe.ExprAttribute) and str(value).endswith(
                ".default"
            ):
                names.add(str(value).removesuffix(".default"))
    return names


def _own_parameters(
    cls: griffe.Class, kind: str, options: dict[str, Any]
) -> list[griffe.Parameter]:
    """The ``__init__`` parameters that the fields of *cls* itself make."""
    auto_attribs = options.get("auto_attribs")
    collect_annotated = _is_true(auto_attribs) or (
        kind not in OLD_API and str(auto_attribs) != "False"
    )
    class_kw_only = _is_true(options.get("kw_only"))
    computed = _defaults_by_decorator(cls)
    parameters: list[griffe.Parameter] = []
    for member in cls.members.values():
        if member.is_alias or not isinstance(member, griffe.Attribute):
            continue
        if "property" in member.labels or "instance-attribute" not in member.labels:
            continue  # a property, a ClassVar, or an attribute set in a method
        field = _field_call(member)
        if field is None and not (collect_annotated and member.annotation is not None):
            continue
        arguments = _call_arguments(field) if field is not None else {}
        if str(arguments.get("init")) == "False":
            continue
        default: str | griffe.Expr | None
        if field is None:
            default = member.value
        elif "factory" in arguments:
            default = griffe.ExprCall(function=arguments["factory"], arguments=[])
        else:
            default = arguments.get("default")
        if (
            isinstance(default, griffe.ExprCall)
            and default.canonical_path in FACTORY_CALLS
        ):
            factory = default.arguments[0] if default.arguments else "..."
            default = griffe.ExprCall(function=factory, arguments=[])
        if default is None and member.name in computed:
            default = "..."
        alias = arguments.get("alias")
        name = (
            ast.literal_eval(str(alias))
            if alias is not None
            else member.name.lstrip("_")
        )
        kw_only = class_kw_only or _is_true(arguments.get("kw_only"))
        converter = arguments.get("converter")
        annotation = (
            converter and _converter_annotation(cls, converter)
        ) or member.annotation
        parameters.append(
            griffe.Parameter(
                name,
                annotation=annotation,
                kind=griffe.ParameterKind.keyword_only
                if kw_only
                else griffe.ParameterKind.positional_or_keyword,
                default=default,
                docstring=member.docstring,
            )
        )
    return parameters


def _set_attrs_init(cls: griffe.Class) -> None:
    """Give an attrs class that has no ``__init__`` of its own the one attrs writes."""
    found = _attrs_decorator(cls)
    if found is None or "__init__" in cls.members:
        return
    kind, options = found
    if str(options.get("init")) == "False":
        return
    try:
        bases = [base for base in reversed(cls.mro()) if _attrs_decorator(base)]
    except ValueError:  # a base outside the loaded packages
        bases = []
    fields: dict[str, griffe.Parameter] = {}
    for owner in [*bases, cls]:
        owner_kind, owner_options = _attrs_decorator(owner) or (kind, options)
        for parameter in _own_parameters(owner, owner_kind, owner_options):
            fields.pop(parameter.name, None)  # a redefined field moves to the end
            fields[parameter.name] = parameter
    positional = [
        p for p in fields.values() if p.kind is not griffe.ParameterKind.keyword_only
    ]
    keyword = [
        p for p in fields.values() if p.kind is griffe.ParameterKind.keyword_only
    ]
    init = griffe.Function(
        "__init__",
        lineno=cls.lineno,
        endlineno=cls.lineno,
        parent=cls,
        parameters=griffe.Parameters(
            griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword),
            *positional,
            *keyword,
        ),
        returns="None",
    )
    cls.set_member("__init__", init)
    cls.labels.add("attrs")


def _set_plain_init(cls: griffe.Class) -> None:
    """Give a class with no base and no constructor the one it has: ``Name()``."""
    if cls.bases or "__init__" in cls.members or "__new__" in cls.members:
        return
    cls.set_member(
        "__init__",
        griffe.Function(
            "__init__",
            lineno=cls.lineno,
            endlineno=cls.lineno,
            parent=cls,
            parameters=griffe.Parameters(
                griffe.Parameter(
                    "self", kind=griffe.ParameterKind.positional_or_keyword
                )
            ),
            returns="None",
        ),
    )


def _private_names(expr: str | griffe.Expr | None) -> Iterator[griffe.ExprName]:
    if not isinstance(expr, griffe.Expr):
        return
    for element in expr.iterate(flat=True):
        if isinstance(element, griffe.ExprName) and element.name.startswith("_"):
            yield element


def _hide_private_types(function: griffe.Function) -> None:
    """Keep the package's private names out of a signature's parameters."""
    for parameter in function.parameters:
        for name in _private_names(parameter.annotation):
            target = name.canonical_path
            if any(part.startswith("_") for part in target.split(".")[-1:]):
                parameter.annotation = None  # a private class: no public name to show
                break
            # An import under a private name: show the public object it is.
            name.name, name.parent = target, None


def _walk(obj: griffe.Module | griffe.Class, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    if isinstance(obj, griffe.Class):
        _set_attrs_init(obj)
        _set_plain_init(obj)
    for member in list(obj.members.values()):
        if member.is_alias:
            continue
        if isinstance(member, (griffe.Module, griffe.Class)):
            _walk(member, seen)
        elif isinstance(member, griffe.Function):
            _hide_private_types(member)


class AttrsExtension(griffe.Extension):
    """Write the ``__init__`` of attrs classes; keep private names out of signatures."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:  # noqa: ARG002
        """Process a package once all its modules are loaded."""
        _walk(pkg, set())
