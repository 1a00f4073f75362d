"""Model names: each pattern parsed one way (arcnn/model_names.py), variants never mistaken for
the model they were trained on the way to."""

from arcnn.model_names import (BLIND_MODEL, CHROMA_MODELS, QUALITY_FAMILIES, TIERS, NumberedName, in_family,
                               is_profile_name, nearest_quality_model, parse_numbered, platform_model, quality_model,
                               quality_models, random_spec, webp_models)

BUNDLE = ["colour", "colour-fast", "fast-arcnn-q10", "fast-arcnn-q20", "jpeg-any", "jpeg-q10",
          "jpeg-q10-scratch", "jpeg-q10-stage2", "jpeg-q20", "jpeg-q40", "jpeg-tables-s4", "jpeg-tables-s16",
          "platform-twitter", "webp-q20", "webp-q70"]


def test_numbered_names_parse_into_family_number_and_variant():
    assert parse_numbered("jpeg-q10") == NumberedName("jpeg-q", 10)
    assert parse_numbered("jpeg-q10-stage2") == NumberedName("jpeg-q", 10, "stage2")
    assert parse_numbered("fast-arcnn-q90") == NumberedName("fast-arcnn-q", 90)
    assert parse_numbered("webp-q40") == NumberedName("webp-q", 40)
    assert parse_numbered("jpeg-tables-s16") == NumberedName("jpeg-tables-s", 16)
    for other in ("jpeg-any", "colour", "platform-webp", "jpeg-q", "jpeg-qx", "xjpeg-q10", "random:9-1-5"):
        assert parse_numbered(other) is None, other


def test_each_tier_has_a_quality_family_and_a_chroma_model():
    assert set(QUALITY_FAMILIES) == set(CHROMA_MODELS) == set(TIERS)
    assert quality_model(20) == "jpeg-q20" and quality_model(20, "fast") == "fast-arcnn-q20"
    assert all(parse_numbered(quality_model(30, tier)).family == QUALITY_FAMILIES[tier] for tier in TIERS)


def test_families_by_number_leave_variants_and_other_families_out():
    assert quality_models(BUNDLE) == {10: "jpeg-q10", 20: "jpeg-q20", 40: "jpeg-q40"}
    assert quality_models(BUNDLE, "fast") == {10: "fast-arcnn-q10", 20: "fast-arcnn-q20"}
    assert webp_models(BUNDLE) == {20: "webp-q20", 70: "webp-q70"}
    assert BLIND_MODEL in BUNDLE and BLIND_MODEL not in quality_models(BUNDLE).values()


def test_in_family_counts_variants():
    assert in_family("jpeg-q10-stage2", "jpeg-q") and in_family("jpeg-q10", "jpeg-q")
    assert not in_family("jpeg-tables-s4", "jpeg-q") and not in_family("jpeg-any", "jpeg-q")


def test_nearest_quality_model_breaks_ties_towards_the_lower_quality():
    names = ["jpeg-q10", "jpeg-q20", "jpeg-q40", "jpeg-any"]
    assert nearest_quality_model(12, names) == "jpeg-q10"
    assert nearest_quality_model(15, names) == "jpeg-q10"
    assert nearest_quality_model(30, names) == "jpeg-q20"
    assert nearest_quality_model(95, names) == "jpeg-q40"
    assert nearest_quality_model(None, names) is None
    assert nearest_quality_model(10, ["jpeg-any"]) is None
    assert nearest_quality_model(18, BUNDLE, "fast") == "fast-arcnn-q20"


def test_platform_and_random_names():
    assert platform_model("twitter") == "platform-twitter"
    assert is_profile_name("my-site2") and not is_profile_name("My Site") and not is_profile_name("-x")
    assert random_spec("random:9-7-1-5") == "9-7-1-5" and random_spec("jpeg-q10") is None


def test_no_other_module_parses_model_names():
    """The patterns live in arcnn/model_names.py only: no other module matches a family prefix
    with a regular expression or ``startswith`` (a second parser drifts from the first)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    prefixes = (*QUALITY_FAMILIES.values(), "webp-q", "jpeg-tables-s", "platform-", "random:")
    offenders = []
    for module in sorted(p for package in ("arcnn", "training", "worker", "bench") for p in (root / package).rglob("*.py")):
        if module.name == "model_names.py":
            continue
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            parsing = node.func.attr in ("startswith", "removeprefix") or (
                isinstance(node.func.value, ast.Name) and node.func.value.id == "re")
            texts = [c.value for a in node.args for c in ast.walk(a)
                     if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            if parsing and any(p in t for t in texts for p in prefixes):
                offenders.append(f"{module.relative_to(root)}:{node.lineno}")
    assert offenders == []
