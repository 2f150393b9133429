from typing import Any

def walk(pages: Any, page_size: int, times: Any, offsets: Any, lengths: Any,
         page_info: Any) -> tuple[int, int, str]: ...
