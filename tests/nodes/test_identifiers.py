"""MAC, UUID and Raspberry Pi serial normalisation, with property-based tests."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodes.identifiers import normalize_mac, normalize_pi_serial, normalize_serial, normalize_uuid

# unicast, non-zero MACs as 6 bytes
mac_bytes = st.binary(min_size=6, max_size=6).filter(lambda b: not b[0] & 1 and any(b))


@given(mac_bytes, st.sampled_from(["colon", "dash", "cisco", "bare"]), st.booleans())
def test_every_accepted_spelling_normalises_to_colon_lower(raw, form, upper):
    hexs = raw.hex()
    canonical = ":".join(hexs[i : i + 2] for i in range(0, 12, 2))
    text = {
        "colon": canonical,
        "dash": canonical.replace(":", "-"),
        "cisco": f"{hexs[0:4]}.{hexs[4:8]}.{hexs[8:12]}",
        "bare": hexs,
    }[form]
    if upper:
        text = text.upper()
    assert normalize_mac(f"  {text} ") == canonical
    assert normalize_mac(canonical) == canonical  # idempotent


@given(st.text(max_size=40))
def test_mac_never_crashes_and_output_is_canonical(text):
    try:
        out = normalize_mac(text)
    except ValueError as exc:
        assert "aa:bb:cc:dd:ee:ff" in str(exc) or "MAC" in str(exc)
    else:
        assert len(out) == 17 and out == out.lower() and out.count(":") == 5


@pytest.mark.parametrize(
    "bad", ["aa:bb:cc:dd:ee", "aa:bb-cc:dd:ee:ff", "gg:bb:cc:dd:ee:ff", "", None, 12, "a" * 100]
)
def test_malformed_macs_refused(bad):
    with pytest.raises(ValueError):
        normalize_mac(bad)


@given(st.uuids(), st.booleans(), st.booleans(), st.booleans())
def test_uuid_forms(value, braces, upper, hyphens):
    text = str(value) if hyphens else value.hex
    text = text.upper() if upper else text
    text = "{" + text + "}" if braces else text
    if value.int in (0, (1 << 128) - 1):
        return
    assert normalize_uuid(text) == str(value)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "1234",
        "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
        str(uuid.UUID(int=0)),
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
    ],
)
def test_bad_uuids_refused(bad):
    with pytest.raises(ValueError):
        normalize_uuid(bad)


@given(st.integers(min_value=0, max_value=0xFFFFFFFF), st.sampled_from(["", "0x", "00000000"]))
def test_pi_serial_forms(n, prefix):
    expected = f"{n:08x}"
    assert normalize_pi_serial(prefix + expected.upper()) == expected


@pytest.mark.parametrize("bad", ["1234567", "123456789", "ghijklmn", "100000001a2b3c4d", ""])
def test_bad_pi_serials_refused(bad):
    with pytest.raises(ValueError):
        normalize_pi_serial(bad)


def test_serials_are_trimmed_and_control_characters_refused():
    assert normalize_serial("  CZ1234 ABC ") == "CZ1234 ABC"
    with pytest.raises(ValueError):
        normalize_serial("bad\nserial")
    with pytest.raises(ValueError):
        normalize_serial("x" * 200)
