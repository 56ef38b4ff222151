"""The walkthroughs (docs/walkthrough.md and its Chinese translation docs/walkthrough.zh.md)
point at the code: every backticked `path/file.py:name` or `path/file.py:Class.method` must name
a file and an attribute that exist, every backticked `path/file.py` must exist, both documents
must cite the same references, and both must cover every step of the outline (initialisation:
MDP, policy, expert data, discriminator, value function, optimizer; iteration: sampling,
advantages, policy step, discriminator step, value step), each step citing the code."""
import ast
import importlib
import importlib.util
import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = {
    "en": os.path.join(REPO_ROOT, "docs", "walkthrough.md"),
    "zh": os.path.join(REPO_ROOT, "docs", "walkthrough.zh.md"),
}

# The outline's headings, in order (text each heading must contain). The first and the eighth
# entries are the two parts; the others are the steps, each of which must cite code.
OUTLINE = {
    "en": ["Part 1: Initialisation", "1. The MDP", "2. The policy", "3. Expert data",
           "4. The discriminator", "5. The value function", "6. The optimizer",
           "Part 2: The iteration", "1. Sampling", "2. Rewards and advantages",
           "3. The policy step", "4. The discriminator step", "5. The value step"],
    "zh": ["第一部分：初始化定义", "1. 定义 MDP", "2. 生成网络", "3. 载入专家轨迹",
           "4. 判别网络", "5. 价值函数", "6. 整体优化器",
           "第二部分：迭代更新", "1. 轨迹采样", "2. 奖励与优势值",
           "3. 更新生成网络", "4. 更新判别网络", "5. 更新价值函数"],
}
PART_INDICES = (0, 7)

REF_RE = re.compile(r"([\w/]+\.py):([\w.]+)")
FILE_RE = re.compile(r"[\w/]+\.py")
SPAN_RE = re.compile(r"`([^`\n]+)`")
FENCE_RE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def read_doc(lang):
    path = DOCS[lang]
    if not os.path.exists(path):
        pytest.fail(f"{os.path.relpath(path, REPO_ROOT)} is missing")
    with open(path, encoding="utf-8") as f:
        return f.read()


def strip_fences(text):
    """The text without fenced code blocks (shell examples are not references)."""
    return FENCE_RE.sub("", text)


def spans(text):
    return SPAN_RE.findall(strip_fences(text))


def code_refs(text):
    """{(file, dotted name)} of every backticked `file.py:name`."""
    out = set()
    for s in spans(text):
        m = REF_RE.fullmatch(s.strip())
        if m:
            out.add((m.group(1), m.group(2)))
    return out


def malformed_refs(text):
    """Backticked spans that look like code references but do not parse as one."""
    return sorted({s for s in spans(text) if ".py:" in s and not REF_RE.fullmatch(s.strip())})


def file_refs(text):
    """{file} of every backticked bare `path/file.py`."""
    return {s.strip() for s in spans(text) if FILE_RE.fullmatch(s.strip())}


_modules = {}


def _outline(node):
    """The names an AST body defines at its top level, classes with their own bodies."""
    from types import SimpleNamespace

    names = {}
    for n in node.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[n.name] = SimpleNamespace()
        elif isinstance(n, ast.ClassDef):
            names[n.name] = _outline(n)
        elif isinstance(n, ast.Assign):
            names.update({t.id: SimpleNamespace() for t in n.targets if isinstance(t, ast.Name)})
    return SimpleNamespace(**names)


def load_module(relpath):
    """The module at `relpath` (relative to the repository root): package modules imported by
    their dotted name; anything else (scripts/, which are run, never imported) as the outline
    of what its source defines."""
    if relpath in _modules:
        return _modules[relpath]
    parts = relpath[:-len(".py")].split("/")
    pkg_dir = os.path.join(REPO_ROOT, *parts[:-1])
    if len(parts) > 1 and os.path.exists(os.path.join(pkg_dir, "__init__.py")):
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mod = importlib.import_module(name)
    else:
        with open(os.path.join(REPO_ROOT, relpath)) as f:
            mod = _outline(ast.parse(f.read()))
    _modules[relpath] = mod
    return mod


def check_ref(relpath, dotted):
    """None when `relpath` exists and `dotted` resolves in it, else what is wrong."""
    if not os.path.isfile(os.path.join(REPO_ROOT, relpath)):
        return "no such file"
    try:
        obj = load_module(relpath)
    except Exception as e:  # report, do not crash the whole check
        return f"import failed: {type(e).__name__}: {e}"
    walked = []
    for part in dotted.split("."):
        if not part or not hasattr(obj, part):
            where = ".".join(walked) or relpath
            return f"{where} has no attribute {part!r}"
        obj = getattr(obj, part)
        walked.append(part)
    return None


@pytest.mark.parametrize("lang", sorted(DOCS))
def test_code_references_resolve(lang):
    text = read_doc(lang)
    refs = code_refs(text)
    assert len(refs) >= 30, f"{DOCS[lang]}: only {len(refs)} code references found"
    broken = []
    for relpath, dotted in sorted(refs):
        problem = check_ref(relpath, dotted)
        if problem:
            broken.append(f"`{relpath}:{dotted}`: {problem}")
    bad_syntax = malformed_refs(text)
    msg = []
    if broken:
        msg.append(f"{len(broken)} of {len(refs)} references in {os.path.basename(DOCS[lang])} "
                   "are broken:\n  " + "\n  ".join(broken))
    if bad_syntax:
        msg.append("malformed references (write `path/file.py:name` or "
                   "`path/file.py:Class.method`):\n  " + "\n  ".join(bad_syntax))
    assert not msg, "\n".join(msg)


@pytest.mark.parametrize("lang", sorted(DOCS))
def test_file_references_exist(lang):
    text = read_doc(lang)
    files = file_refs(text) | {f for f, _ in code_refs(text)}
    missing = sorted(f for f in files if not os.path.isfile(os.path.join(REPO_ROOT, f)))
    assert not missing, (f"files named in {os.path.basename(DOCS[lang])} do not exist:\n  "
                         + "\n  ".join(missing))


def test_translations_cite_the_same_code():
    en, zh = read_doc("en"), read_doc("zh")
    en_refs = code_refs(en) | {(f, None) for f in file_refs(en)}
    zh_refs = code_refs(zh) | {(f, None) for f in file_refs(zh)}

    def fmt(refs):
        return "\n  ".join(f if n is None else f"{f}:{n}" for f, n in sorted(
            refs, key=lambda r: (r[0], r[1] or "")))

    msg = []
    if en_refs - zh_refs:
        msg.append("only in walkthrough.md:\n  " + fmt(en_refs - zh_refs))
    if zh_refs - en_refs:
        msg.append("only in walkthrough.zh.md:\n  " + fmt(zh_refs - en_refs))
    assert not msg, "the two walkthroughs cite different code:\n" + "\n".join(msg)


def sections(text):
    """[(level, heading text, body up to the next heading of the same or a higher level)]."""
    text = strip_fences(text)
    heads = list(HEADING_RE.finditer(text))
    out = []
    for i, h in enumerate(heads):
        level = len(h.group(1))
        end = len(text)
        for later in heads[i + 1:]:
            if len(later.group(1)) <= level:
                end = later.start()
                break
        out.append((level, h.group(2), text[h.end():end]))
    return out


@pytest.mark.parametrize("lang", sorted(DOCS))
def test_outline_steps_present_in_order(lang):
    secs = sections(read_doc(lang))
    pos, missing, uncited = 0, [], []
    for k, wanted in enumerate(OUTLINE[lang]):
        j = next((i for i in range(pos, len(secs)) if wanted in secs[i][1]), None)
        if j is None:
            missing.append(wanted)
            continue
        pos = j + 1
        if k not in PART_INDICES and not code_refs(secs[j][2]):
            uncited.append(wanted)
    assert not missing, (f"{os.path.basename(DOCS[lang])}: outline headings missing or out of "
                         "order:\n  " + "\n  ".join(missing))
    assert not uncited, (f"{os.path.basename(DOCS[lang])}: steps that cite no code "
                         "(`file.py:name`):\n  " + "\n  ".join(uncited))


@pytest.mark.parametrize("lang", sorted(DOCS))
def test_key_equations_present(lang):
    text = read_doc(lang)
    for needle in (r"\delta_t = r_t + \gamma\,V(s_{t+1}) - V(s_t)",  # GAE
                   r"(\gamma\lambda)^k",
                   r"(H + d\,I)\,s = g",  # conjugate gradient system
                   r"-\log\big(1-D(s,a)\big)",  # GAIL reward
                   r"J^{\top}H_zJv"):  # Gauss-Newton product
        assert needle in text, f"{os.path.basename(DOCS[lang])} lacks the equation {needle!r}"
