"""One view: ``/emit?origin=..&n=..&via=crud|log`` emits n records and says which stream wrote them.

``&wait=SECONDS`` first waits that long: a request still under way when the server is told to stop.
"""

from __future__ import annotations

import os
import time

from django.http import HttpRequest, JsonResponse

from activity_audit.dispatch import pipeline

from .emitting import emit


def emit_view(request: HttpRequest) -> JsonResponse:
    origin = request.GET["origin"]
    count = int(request.GET["n"])
    time.sleep(float(request.GET.get("wait", "0")))
    half = count // 2
    emit(origin, half, via="crud")
    emit(f"{origin}-log", count - half, via="log")
    return JsonResponse(
        {"pid": os.getpid(), "stream_id": pipeline.stream_id, "origin": origin, "count": count}
    )


def ready_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})
