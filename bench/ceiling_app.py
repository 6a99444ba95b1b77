"""The ceiling: a bare Starlette endpoint returning a fixed JSON task, on the same server
stack as sfumato (uvicorn with uvloop and httptools). Nothing can be faster than this."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

TASK = {
    "id": "task_00000000000000000000000000000000", "status": "queued", "model": "qwen-image",
    "reserved_credits": 4, "final_credits": 0, "created_at": "2026-05-11T00:00:00.000Z",
    "updated_at": "2026-05-11T00:00:00.000Z", "result": None, "error": None,
}


async def task(request):
    return JSONResponse(TASK)


app = Starlette(routes=[Route("/task", task, methods=["GET", "POST"])])
