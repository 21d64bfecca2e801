"""Rayfine's names and labels made valid for Kubernetes, and read back.

Docker accepts any label and most names; Kubernetes wants label keys and
values of at most 63 characters from ``[A-Za-z0-9_.-]`` and object names
that are lower-case DNS labels.  Valid labels pass unchanged (so
``kubectl get pods -l rayfine.env_id=...`` works); others become a hash,
the same one every time, so selectors still find them.  The originals
travel in annotations and are what :func:`original_labels` returns.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

from rayfine_core.errors import ValidationError

ANNOTATION_PREFIX = "rayfine.dev/"
LABELS_ANNOTATION = ANNOTATION_PREFIX + "labels"
NAME_ANNOTATION = ANNOTATION_PREFIX + "name"
IMAGE_ANNOTATION = ANNOTATION_PREFIX + "image"
HASHED_KEY_PREFIX = "labels.rayfine.dev/"
MAX_OBJECT_NAME = 52
"""Longest Job name: the pod adds ``-xxxxx``, and ``job-name`` must stay a label value."""

_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def valid_label_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not (0 < len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(_NAME_PART.match(name))


def valid_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and bool(_NAME_PART.match(value)))


def label_key(key: str) -> str:
    """``key`` if Kubernetes accepts it, else a stable hashed key."""
    return key if valid_label_key(key) else HASHED_KEY_PREFIX + "k" + _digest(key, 40)


def label_value(value: str) -> str:
    """``value`` if Kubernetes accepts it, else a stable hash of it."""
    return value if valid_label_value(value) else "h" + _digest(value, 40)


def encode_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {label_key(str(k)): label_value(str(v)) for k, v in labels.items()}


def selector(labels: Mapping[str, str]) -> str:
    """A label selector matching objects that carry all of ``labels``."""
    return ",".join(f"{k}={v}" for k, v in sorted(encode_labels(labels).items()))


def original_labels(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The labels Rayfine was asked to set (from the annotation), else the object's own."""
    stored = (metadata.get("annotations") or {}).get(LABELS_ANNOTATION)
    if stored:
        try:
            value = json.loads(stored)
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
        except ValueError:
            pass
    return dict(metadata.get("labels") or {})


def notes(labels: Mapping[str, str], name: str, image: str) -> dict[str, str]:
    return {
        LABELS_ANNOTATION: json.dumps(dict(labels), sort_keys=True),
        NAME_ANNOTATION: name,
        IMAGE_ANNOTATION: image,
    }


def object_name(name: str) -> str:
    """The Job's name for a container name: a DNS label, unique per original name.

    A name that had to change (case, characters, length) gets a hash of the
    original, so two different names never collide.
    """
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    if cleaned == name and len(cleaned) <= MAX_OBJECT_NAME:
        return cleaned
    keep = MAX_OBJECT_NAME - 7
    return f"{cleaned[:keep].rstrip('-') or 'rayfine'}-{_digest(name, 6)}"


def check_namespace(namespace: str) -> str:
    if not (len(namespace) <= 63 and _DNS_LABEL.match(namespace)):
        raise ValidationError(
            f"Invalid Kubernetes namespace {namespace!r}: use a lower-case DNS label"
            " (letters, digits, '-'; at most 63)."
        )
    return namespace


def container_id(namespace: str, job: str, pod: str = "") -> str:
    """Rayfine's id of an environment: ``namespace/job/pod`` (pod empty until it exists)."""
    return f"{namespace}/{job}/{pod}"


def split_id(container_id: str) -> tuple[str, str, str]:
    """``(namespace, job, pod)`` from :func:`container_id`; ValidationError if malformed."""
    parts = container_id.split("/")
    if (
        len(parts) != 3
        or not _DNS_LABEL.match(parts[0])
        or not _DNS_LABEL.match(parts[1])
        or (parts[2] and not _DNS_SUBDOMAIN.match(parts[2]))
    ):
        raise ValidationError(
            f"{container_id!r} is not a Kubernetes environment id (namespace/job/pod)."
        )
    return parts[0], parts[1], parts[2]
