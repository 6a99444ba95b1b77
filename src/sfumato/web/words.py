"""The model pages' own words, in each language they are rendered in. The catalog supplies the
models' text (summaries, labels, descriptions); these are the headings and table captions.
The Thai follows the wording of the original pages in ``shared/seeds/``."""

from __future__ import annotations

LANGS = ("en", "th")

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "models": "Models", "model_page": "Model API page", "model_id": "API model id", "inputs": "Inputs",
        "files_api": "Files API", "required_for_reference": "required for reference mode",
        "not_required": "not required for a minimal request", "credits": "Base credits", "capability": "Capability",
        "image": "image", "billing": "Billing", "prompt_limit": "Prompt limit",
        "none": "no prompt limit documented", "characters": "characters", "contract": "Request contract",
        "contract_intro": "Send the model id at the top level; model-specific controls go in params.",
        "params": "Model parameters", "key": "Key", "type": "Type", "required_col": "Required",
        "default": "Default", "options": "Options", "description": "Description", "yes": "yes", "no": "no",
        "model_desc": "Use the API model id {id}.",
        "prompt_desc": "At most {n} characters for this model (Unicode code points).",
        "prompt_desc_none": "Text prompt; this page documents no limit (the server caps it at {n}).",
        "params_desc": "Model-specific parameters: only the keys in the table below.",
        "client_request_id_desc": "Optional client-side id to trace the request in your own system; also the "
                                  "idempotency key (same id and body: the same task back).",
        "upload_policy": "Upload policy",
        "upload_policy_text": "Upload reference files first through POST /api/v1/files, then put the returned "
                              "URL (and, for video or audio, the durationToken) in params.referenceMediaItems.",
        "references": "Reference rules", "no_references": "This model takes no reference files: a request "
                                                          "with params.referenceMediaItems is validation_failed.",
        "max_files": "Maximum files", "kinds": "Accepted kinds", "duration_token": "Duration token",
        "duration_token_text": "Video and audio references carry the durationToken from /api/v1/files when the "
                               "duration must be checked.",
        "kind": "Kind", "max_size": "Maximum size", "mime": "MIME types", "integer": "base-10 integer {min} to {max}",
        "minimal": "Minimal request", "reference_request": "Request with a reference file",
        "create_response": "Create response",
        "create_response_text": "The create endpoint returns a public task id at once; poll the status endpoint "
                                "(GET /api/v1/tasks/{id}) until the task has succeeded or failed.",
        "finished_response": "A finished task", "errors": "Common errors", "other_errors": "Other errors",
        "upstream": "Upstream", "http": "HTTP", "when": "When", "try_it": "Try it in the playground",
        "other_lang": "ภาษาไทย", "not_found": "No such model.", "known_models": "Known models:",
        "api_reference": "API reference",
    },
    "th": {
        "models": "โมเดล", "model_page": "หน้า API ของโมเดล", "model_id": "ID โมเดล API", "inputs": "Input",
        "files_api": "Files API", "required_for_reference": "จำเป็นสำหรับโหมด reference",
        "not_required": "ไม่จำเป็นสำหรับ request ขั้นต่ำ", "credits": "เครดิตพื้นฐาน", "capability": "ความสามารถ",
        "image": "รูปภาพ", "billing": "Billing", "prompt_limit": "ขีดจำกัดพรอมต์",
        "none": "ยังไม่มีขีดจำกัดพรอมต์ในเอกสาร", "characters": "อักขระ", "contract": "contract ของ request",
        "contract_intro": "ส่ง model id ที่ระดับบนสุด control เฉพาะโมเดลอยู่ใน params",
        "params": "พารามิเตอร์โมเดล", "key": "Key", "type": "Type", "required_col": "จำเป็น",
        "default": "ค่าเริ่มต้น", "options": "ตัวเลือก", "description": "คำอธิบาย", "yes": "ใช่", "no": "ไม่ใช่",
        "model_desc": "ใช้ API model id {id}",
        "prompt_desc": "สูงสุด {n} อักขระสำหรับโมเดลนี้",
        "prompt_desc_none": "ข้อความพรอมต์สำหรับโมเดลที่รองรับ input แบบข้อความ (เซิร์ฟเวอร์จำกัดที่ {n})",
        "params_desc": "object พารามิเตอร์เฉพาะโมเดล ใช้แถวด้านล่างสำหรับ key ที่อนุญาต",
        "client_request_id_desc": "client-side id แบบเลือกได้สำหรับ trace คำขอในระบบของคุณ",
        "upload_policy": "policy การอัปโหลด",
        "upload_policy_text": "อัปโหลดไฟล์ reference ก่อน จากนั้นใส่ URL และ duration token ที่ได้กลับมาไว้ใน "
                              "params.referenceMediaItems",
        "references": "กฎ reference", "no_references": "โมเดลนี้ไม่รับไฟล์ reference",
        "max_files": "ไฟล์สูงสุด", "kinds": "ชนิดไฟล์ที่รับ", "duration_token": "Duration token",
        "duration_token_text": "reference วิดีโอและเสียงควรมี durationToken จาก /api/v1/files "
                               "เมื่อจำเป็นต้องตรวจ duration",
        "kind": "kind", "max_size": "ขนาดสูงสุด", "mime": "MIME type", "integer": "จำนวนเต็มฐานสิบ {min} ถึง {max}",
        "minimal": "request ขั้นต่ำ", "reference_request": "request แบบไฟล์ reference",
        "create_response": "response จากการสร้าง",
        "create_response_text": "endpoint create ส่ง public task id กลับมา poll endpoint "
                                "สถานะจนกว่างานจะสำเร็จหรือล้มเหลว",
        "finished_response": "งานที่เสร็จแล้ว", "errors": "error ทั่วไป", "other_errors": "error อื่น ๆ",
        "upstream": "Upstream", "http": "HTTP", "when": "เมื่อ", "try_it": "ลองใน playground",
        "other_lang": "English", "not_found": "ไม่พบโมเดลนี้", "known_models": "โมเดลที่มี:",
        "api_reference": "เอกสารอ้างอิง API",
    },
}

# The seed pages' "common errors", then the others this server answers (docs/api.md).
COMMON_ERRORS = [("validation_failed", 422), ("insufficient_credits", 402), ("idempotency_conflict", 409),
                 ("rate_limited", 429), ("not_found", 404)]
OTHER_ERRORS = [("unauthorized", 401), ("payload_too_large", 413), ("file_too_large", 413),
                ("task_not_cancelable", 409), ("service_unavailable", 503)]
