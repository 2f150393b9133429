from typing import Any

ABI_VERSION: int
MAX_PAGE: int

def walk(pages: Any, page_size: int, times: Any, offsets: Any, lengths: Any,
         page_info: Any, lenient: bool = ...) -> tuple[int, int, str]: ...
