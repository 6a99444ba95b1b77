"""Loopback fakes of the upstream APIs, one module each, served by uvicorn inside the test
process. Each reproduces its wire protocol and rejects what the real API would reject."""
