"""Prompt templates (HTTP teacher) and the offline backend's rendering templates.

``TEMPLATE_VERSION`` names this file's templates; the preset's ``synthetic.template_version`` must equal
it (a changed template is a new version, so cached answers and artifacts of the old one are not reused).
"""

from __future__ import annotations

from decimal import Decimal

from synthetic.stem import CONVERSIONS, Problem, fmt

TEMPLATE_VERSION = "v1"

LANGUAGE_NAMES = {
    "en": "English",
    "ko": "Korean",
    "es": "Spanish",
    "de": "German",
    "ja": "Japanese",
    "vi": "Vietnamese",
}

THINKING_SYSTEM = (
    "You are a careful teacher. Read the document, then answer the question about it in reasoning mode: "
    "write your step-by-step reasoning between {think_open} and {think_close}, grounded in the document, "
    "then one final line 'Answer: <number>'. Write the reasoning in {language}."
)
THINKING_USER = "Document:\n{document}\n\nQuestion: {question}"
THINKING_USER_OPEN = (
    "Document:\n{document}\n\nAsk one question that the document answers, then answer it. Start with 'Question: ...'."
)

CROSSLINGUAL_SYSTEM = (
    "You write educational text. Rewrite the knowledge of the document as a self-contained text in "
    "{language}. Keep every number and unit exactly. Output only the text."
)
CROSSLINGUAL_USER = "Document ({source_language}):\n{document}\n\nValues to keep: {values}"


def thinking_messages(
    document: str, problem: Problem | None, language: str, think: tuple[str, str]
) -> list[dict[str, str]]:
    system = THINKING_SYSTEM.format(think_open=think[0], think_close=think[1], language=LANGUAGE_NAMES[language])
    user = (
        THINKING_USER.format(document=document, question=problem.question)
        if problem
        else THINKING_USER_OPEN.format(document=document)
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def crosslingual_messages(document: str, source_language: str, target: str, values: list[str]) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": CROSSLINGUAL_SYSTEM.format(language=LANGUAGE_NAMES[target])},
        {
            "role": "user",
            "content": CROSSLINGUAL_USER.format(
                source_language=LANGUAGE_NAMES[source_language], document=document, values=", ".join(values) or "none"
            ),
        },
    ]


# -- offline programmatic trajectories (English; the STEM partition is English) -------------------


def offline_trajectory(problem: Problem) -> str:
    """A correct step-by-step derivation of ``problem`` computed from its operands."""
    if problem.kind == "convert":
        value, unit, target = problem.operands
        factor = CONVERSIONS[unit][1]
        return (
            f"The document gives the quantity {value} {unit}, and the question asks for it in {target}.\n"
            f"One {unit} equals {fmt(factor)} {target}, so I multiply the value by {fmt(factor)}.\n"
            f"{value} × {fmt(factor)} = {fmt(problem.answer)}.\n"
            f"So the quantity is {fmt(problem.answer)} {target}; the unit {target} is what was asked for."
        )
    if problem.kind == "add":
        a, b, unit = problem.operands
        return (
            f"Both quantities from the document are in {unit}, so they can be added directly.\n"
            f"{a} + {b} = {fmt(problem.answer)}.\n"
            f"The sum keeps the unit {unit}, giving {fmt(problem.answer)} {unit}."
        )
    a, k, c = problem.operands
    return (
        f"The equation uses the value {a} taken from the document as the coefficient of x.\n"
        f"Subtract {k} from both sides: {a}·x = {c} - {k} = {fmt(Decimal(c) - Decimal(k))}.\n"
        f"Divide both sides by {a}: x = {fmt(problem.answer)}.\n"
        f"Check: {a} × {fmt(problem.answer)} + {k} = {c}, which matches the right-hand side."
    )


def render_sample(document: str, question: str, trajectory: str, answer: str, think: tuple[str, str]) -> str:
    """One training sample: the source document, the question, the thinking trajectory, the answer."""
    return f"{document}\n\nQuestion: {question}\n{think[0]}\n{trajectory}\n{think[1]}\nAnswer: {answer}"


# -- offline cross-lingual rendering: per-language sentence templates for verifiable facts ---------

FACT_TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "intro": "The following relations come from a technical text and can be checked by recalculating them.",
        "convert": "A value of {a} {u} is equal to {b} {v}.",
        "add": "If you add {a} {u} and {b} {u}, you get {c} {u}.",
        "outro": "Every number in this section was taken from the source or computed with a fixed factor.",
    },
    "ko": {
        "intro": "다음 관계들은 기술 문서에서 가져온 것이며 다시 계산하여 확인할 수 있습니다.",
        "convert": "{a} {u}의 값은 {b} {v}와 같습니다.",
        "add": "{a} {u}에 {b} {u}를 더하면 {c} {u}가 됩니다.",
        "outro": "이 부분의 모든 숫자는 원문에서 가져왔거나 정해진 환산 계수로 계산한 것입니다.",
    },
    "de": {
        "intro": "Die folgenden Zusammenhänge stammen aus einem Fachtext und lassen sich durch Nachrechnen überprüfen.",
        "convert": "Ein Wert von {a} {u} entspricht genau {b} {v}.",
        "add": "Wenn man {a} {u} und {b} {u} addiert, erhält man {c} {u}.",
        "outro": "Alle Zahlen in diesem Abschnitt wurden aus der Quelle übernommen oder mit einem festen "
        "Umrechnungsfaktor berechnet.",
    },
    "es": {
        "intro": "Las siguientes relaciones provienen de un texto técnico y se pueden comprobar volviendo a "
        "calcularlas.",
        "convert": "Un valor de {a} {u} es igual a {b} {v}.",
        "add": "Si se suman {a} {u} y {b} {u}, se obtienen {c} {u}.",
        "outro": "Todos los números de esta sección se tomaron de la fuente o se calcularon con un factor fijo.",
    },
    "vi": {
        "intro": "Các mối quan hệ sau đây được lấy từ một văn bản kỹ thuật và có thể kiểm tra bằng cách tính lại.",
        "convert": "Giá trị {a} {u} bằng đúng {b} {v}.",
        "add": "Nếu cộng {a} {u} với {b} {u}, ta được {c} {u}.",
        "outro": "Mọi con số trong phần này đều được lấy từ nguồn hoặc được tính bằng một hệ số cố định.",
    },
    "ja": {
        "intro": "次の関係は技術的な文章から取り出したもので、計算し直すことで確かめることができます。",
        "convert": "{a} {u}という値は、ちょうど{b} {v}に等しくなります。",
        "add": "{a} {u}と{b} {u}を足すと、{c} {u}になります。",
        "outro": "この部分の数値はすべて原文から取ったもの、または決まった換算係数で計算したものです。",
    },
}


def render_facts(language: str, problems: list[Problem]) -> str:
    """Template rendering (not translation) of the verifiable facts of one document in ``language``."""
    t = FACT_TEMPLATES[language]
    lines = [t["intro"]]
    for p in problems:
        if p.kind == "convert":
            lines.append(t["convert"].format(a=p.operands[0], u=p.operands[1], b=fmt(p.answer), v=p.operands[2]))
        elif p.kind == "add":
            lines.append(t["add"].format(a=p.operands[0], b=p.operands[1], c=fmt(p.answer), u=p.operands[2]))
    lines.append(t["outro"])
    return "\n".join(lines)
