"""Work that grows values without writing output is bounded too: strings doubled in a variable,
lists that share structure (`append $l $l`), reReplaceAll with an empty pattern, toJson. Each case
runs in a child under a 1 GiB address-space limit, so a regression fails here instead of taking the
machine's memory; the child checks it got a TemplateError naming the limit."""

from __future__ import annotations

import pytest

from tests.isolated import run_isolated

_BIG = '{{ $x := printf "%65536s" "" }}'
_SHARED = "{{ $l := list 1 }}{{ range $.L }}{{ $l = append $l $l }}{{ end }}"
CASES = {
    "printf doubling": _BIG + '{{ range $.L }}{{ $x = printf "%s%s" $x $x }}{{ end }}{{ len $x }}',
    "print doubling": _BIG + "{{ range $.L }}{{ $x = print $x $x }}{{ end }}{{ len $x }}",
    "shared lists printed": _SHARED + "{{ $l }}",
    "shared lists to JSON": _SHARED + "{{ toJson $l }}",
    "empty-pattern replace": _BIG + '{{ reReplaceAll "" $x $x | len }}',
    # caught while formatting (not only when written): the message says printf
    "many wide verbs": '{{ printf "' + "%65536d" * 200 + '"' + " 1" * 200 + " }}",
}


@pytest.mark.parametrize("text", list(CASES.values()), ids=list(CASES))
def test_growth_is_bounded(text: str) -> None:
    code = f"""
        from vigil.template import Limits, TemplateError
        from vigil.template.alertmanager import TemplateSet
        try:
            out = TemplateSet(limits=Limits(max_output=1 << 20)).render({text!r}, {{"L": list(range(60))}})
        except TemplateError as e:
            assert "limit" in str(e), str(e)
            if "%65536d" in {text!r}:
                assert "printf result exceeds" in str(e), str(e)
            print("bounded:", str(e)[-80:])
        else:
            raise SystemExit(f"rendered {{len(out)}} characters")
    """
    res = run_isolated(code, max_bytes=1 << 30, deadline_s=120)
    assert res.ok and res.stdout.startswith("bounded:"), (res.returncode, res.stdout, res.stderr[-2000:])
