"""The presentation contexts the listener accepts: every storage SOP class, common syntaxes."""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification

UNCOMPRESSED = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)

# Stored as received: the listener never transcodes, so any syntax ingest can
# index is fine here; these are the ones modalities and PACS commonly send.
STORAGE_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    *UNCOMPRESSED,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)


def supported_contexts() -> list[PresentationContext]:
    """Return Verification plus every storage SOP class pynetdicom knows, in each syntax."""
    contexts = [build_context(Verification, list(UNCOMPRESSED))]
    contexts.extend(
        build_context(context.abstract_syntax, list(STORAGE_TRANSFER_SYNTAXES))
        for context in AllStoragePresentationContexts
    )
    return contexts
