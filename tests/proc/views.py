"""One view: ``/emit?origin=..&n=..&via=crud|log`` emits n records and says which stream wrote them."""

from __future__ import annotations

import os

from django.http import HttpRequest, JsonResponse

from activity_audit.dispatch import pipeline

from .emitting import emit


def emit_view(request: HttpRequest) -> JsonResponse:
    origin = request.GET["origin"]
    count = int(request.GET["n"])
    half = count // 2
    emit(origin, half, via="crud")
    emit(f"{origin}-log", count - half, via="log")
    return JsonResponse(
        {"pid": os.getpid(), "stream_id": pipeline.stream_id, "origin": origin, "count": count}
    )


def ready_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})
