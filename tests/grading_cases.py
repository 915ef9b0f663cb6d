"""(benchmark, idx, gold, response, expected) cases for the grader. Gold answers are the real ones
of ../shared/data at that idx (test_gold_answers_in_the_table_are_real checks it); responses are
R1-style: reasoning, `</think>`, then the answer."""


def B(answer: str) -> str:
    """A finished response that boxes `answer`."""
    return f"Let me work it out.\n\nSo that is it.\n</think>\n\nThe final answer is $\\boxed{{{answer}}}$."


def S(text: str) -> str:
    """A finished response stating its answer in words."""
    return f"Reasoning here.\n</think>\n\n{text}"


def U(text: str) -> str:
    """A response cut off inside <think>."""
    return f"Let me think.\n\n{text}\n\nWait, maybe I should"


M5, OLY, A24, A25, AMC, GSM, ZH, GPQA, SQA = ("Math_Math500", "Math_Olympiad", "Math_AIME2024", "Math_AIME2025",
                                             "Math_AMC23", "Math_GSM8K", "Chinese_GSM8KZH", "Science_GPQA",
                                             "Commensense_StrategyQA")

CASES = [
    # MATH-500: LaTeX forms that must match
    (M5, 0, r"\left( 3, \frac{\pi}{2} \right)", B(r"(3, \frac{\pi}{2})"), True),
    (M5, 0, r"\left( 3, \frac{\pi}{2} \right)", B(r"\left(3,\pi/2\right)"), True),
    (M5, 0, r"\left( 3, \frac{\pi}{2} \right)", B(r"(3, \pi)"), False),
    (M5, 0, r"\left( 3, \frac{\pi}{2} \right)", B(r"(\frac{\pi}{2}, 3)"), False),
    (M5, 1, "p - q", B("-q + p"), True),
    (M5, 1, "p - q", B("q - p"), False),
    (M5, 2, r"\frac{14}{3}", B(r"\dfrac{14}{3}"), True),
    (M5, 2, r"\frac{14}{3}", B("14/3"), True),
    (M5, 2, r"\frac{14}{3}", B(r"4\frac{2}{3}"), True),
    (M5, 2, r"\frac{14}{3}", B("4.67"), False),
    (M5, 2, r"\frac{14}{3}", B(r"\frac{3}{14}"), False),
    (M5, 4, r"\text{Evelyn}", B(r"\text{Evelyn}"), True),
    (M5, 4, r"\text{Evelyn}", B("Evelyn"), True),
    (M5, 4, r"\text{Evelyn}", B(r"\text{Angela}"), False),
    (M5, 7, r"90^\circ", B("90"), True),
    (M5, 7, r"90^\circ", B(r"90^{\circ}"), True),
    (M5, 7, r"90^\circ", B(r"90^\circ"), True),
    (M5, 7, r"90^\circ", B("45"), False),
    (M5, 8, r"3\sqrt{13}", B(r"\sqrt{117}"), True),
    (M5, 8, r"3\sqrt{13}", B(r"3 \sqrt{13}"), True),
    (M5, 8, r"3\sqrt{13}", B(r"3\sqrt{31}"), False),
    (M5, 8, r"3\sqrt{13}", B("3"), False),
    (M5, 11, r"\frac{3}{56}", B(r"\frac{6}{112}"), True),
    (M5, 15, "6 - 5i", B("6-5i"), True),
    (M5, 15, "6 - 5i", B("6+5i"), False),
    (M5, 16, "-50", B("-50"), True),
    (M5, 16, "-50", B("50"), False),
    (M5, 17, r"\pi", B(r"\pi"), True),
    (M5, 17, r"\pi", B("3.14"), False),
    (M5, 23, "x=5", B("5"), True),
    (M5, 23, "x=5", B("x = 5"), True),
    (M5, 23, "x=5", B("x=6"), False),
    (M5, 25, "1,-2", B("-2, 1"), True),
    (M5, 25, "1,-2", B("1"), False),
    (M5, 36, "3, 5, 7", B("7, 5, 3"), True),
    (M5, 36, "3, 5, 7", B("3, 5"), False),
    (M5, 44, "1.25", B(r"\frac{5}{4}"), True),
    (M5, 44, "1.25", B("1.250"), True),
    (M5, 44, "1.25", B("12.5"), False),
    (M5, 54, "0.15", B(r"15\%"), True),
    (M5, 54, "0.15", B("15"), False),
    (M5, 60, "(6,31,-1)", B("(6, 31, -1)"), True),
    (M5, 60, "(6,31,-1)", B("(6, 31, 1)"), False),
    (M5, 73, r"\frac{3\sqrt{3}}{4}", B(r"\frac{3}{4}\sqrt{3}"), True),
    (M5, 96, r"1 \pm \sqrt{19}", B(r"1 + \sqrt{19}, 1 - \sqrt{19}"), True),
    (M5, 96, r"1 \pm \sqrt{19}", B(r"1 + \sqrt{19}"), False),
    (M5, 103, "(3,4]", B("(3, 4]"), True),
    (M5, 103, "(3,4]", B("[3,4]"), False),
    (M5, 103, "(3,4]", B("(3,4)"), False),
    (M5, 106, r"\frac43", B(r"\frac{4}{3}"), True),
    (M5, 159, "3.21", B("3.21"), True),
    (M5, 159, "3.21", B("3.12"), False),
    (M5, 166, r"\frac{270}7\text{ degrees}", B(r"\frac{270}{7}"), True),
    (M5, 166, r"\frac{270}7\text{ degrees}", B(r"\frac{270}{7}^\circ"), True),
    (M5, 176, ".0000672", B("0.0000672"), True),
    (M5, 176, ".0000672", B(r"6.72 \times 10^{-5}"), True),
    (M5, 184, r"(2,\infty)", B(r"(2, \infty)"), True),
    (M5, 184, r"(2,\infty)", B(r"[2, \infty)"), False),
    (M5, 198, r"10,\!080", B("10080"), True),
    (M5, 198, r"10,\!080", B("10,080"), True),
    (M5, 198, r"10,\!080", B("1008"), False),
    (M5, 242, r"\$32,\!348", B("32348"), True),
    (M5, 242, r"\$32,\!348", B(r"\$32,348"), True),
    (M5, 301, r"5.4 \text{ cents}", B("5.4"), True),
    (M5, 301, r"5.4 \text{ cents}", B(r"5.4\text{ cents}"), True),
    (M5, 301, r"5.4 \text{ cents}", B("54"), False),
    (M5, 307, r"(-\infty, 0]", B(r"(-\infty,0]"), True),
    (M5, 307, r"(-\infty, 0]", B(r"(-\infty, 0)"), False),
    (M5, 380, r"(0,9) \cup (9,36)", B(r"(0, 9) \cup (9, 36)"), True),
    (M5, 380, r"(0,9) \cup (9,36)", B("(0, 36)"), False),
    (M5, 383, r"x \in [-2,7]", B("[-2, 7]"), True),
    (M5, 383, r"x \in [-2,7]", B("(-2, 7)"), False),
    (M5, 459, r"\$18.90", B("18.90"), True),
    (M5, 459, r"\$18.90", B("18.9"), True),
    (M5, 459, r"\$18.90", B("18.09"), False),
    (M5, 467, r"15\mbox{ cm}^2", B("15"), True),
    (M5, 488, r"\$36", B(r"\$36"), True),
    (M5, 488, r"\$36", B("36 dollars"), True),
    (M5, 3, "9", B("9"), True),
    (M5, 3, "9", B("\\text{9}"), True),
    # extraction rules on MATH-500 answers
    (M5, 3, "9", B("8") + " Actually $\\boxed{9}$.", True),                  # the last box wins
    (M5, 3, "9", B("9") + " Hmm, $\\boxed{8}$.", False),
    (M5, 2, r"\frac{14}{3}", B(r"\frac{14}{3}"), True),                       # nested braces
    (M5, 73, r"\frac{3\sqrt{3}}{4}", B(r"\frac{3\sqrt{3}}{4}"), True),
    (M5, 3, "9", U("So the answer is 9."), False),                           # number only in unfinished <think>
    (M5, 3, "9", U("So the answer is $\\boxed{9}$."), True),                 # a box counts even unfinished
    (M5, 3, "9", S("The answer is 9."), False),                              # math needs a box
    (M5, 3, "9", "I think it is \\boxed{5}.\n</think>\n\nThe answer is $\\boxed{9}$.", True),  # after </think>
    (M5, 3, "9", "Maybe \\boxed{9}.\n</think>\n\nThe answer is $\\boxed{5}$.", False),
    (M5, 3, "9", "Maybe \\boxed{9}.\n</think>\n\nNo box out here.", False),  # boxes inside thinking do not count after </think>
    (M5, 3, "9", S("$\\boxed 9$"), True),                                   # brace-less box
    (M5, 3, "9", S("$\\fbox{9}$"), True),
    # OlympiadBench
    (OLY, 1, r"$\frac{1}{2 n+2}$", B(r"\frac{1}{2n+2}"), True),
    (OLY, 1, r"$\frac{1}{2 n+2}$", B(r"\frac{1}{2(n+1)}"), True),
    (OLY, 1, r"$\frac{1}{2 n+2}$", B(r"\frac{1}{2n+1}"), False),
    (OLY, 2, r"$2^{1009}$", B("2^{1009}"), True),
    (OLY, 2, r"$2^{1009}$", B("2^{1008}"), False),
    (OLY, 4, r"$2n-2$", B("2(n-1)"), True),
    (OLY, 4, r"$2n-2$", B("2n-1"), False),
    (OLY, 5, r"$(1,8,19), (2,7,13), (4,5,7)$", B("(2,7,13), (1,8,19), (4,5,7)"), True),
    (OLY, 5, r"$(1,8,19), (2,7,13), (4,5,7)$", B("(1,8,19), (2,7,13)"), False),
    (OLY, 8, r"$\binom{2n}{n}$", B(r"\binom{2n}{n}"), True),
    (OLY, 11, r"$f(x)=2 x$", B("f(x) = 2x"), True),
    (OLY, 11, r"$f(x)=2 x$", B("f(x) = x"), False),
    (OLY, 20, "3986729", B("3986729"), True),
    (OLY, 20, "3986729", B("3,986,729"), True),
    (OLY, 20, "3986729", B("3986728"), False),
    (OLY, 40, r"$\frac{n(n+1)(2 n+1)}{6}$", B(r"\frac{2n^3+3n^2+n}{6}"), True),
    (OLY, 40, r"$\frac{n(n+1)(2 n+1)}{6}$", B(r"\frac{n(n+1)}{2}"), False),
    (OLY, 70, r"$\sqrt{2}$", B(r"\sqrt{2}"), True),
    (OLY, 70, r"$\sqrt{2}$", B(r"2^{1/2}"), True),
    (OLY, 70, r"$\sqrt{2}$", B("2"), False),
    (OLY, 150, r"$8 \%$", B(r"8\%"), True),
    (OLY, 150, r"$8 \%$", B("0.08"), True),
    (OLY, 150, r"$8 \%$", B("0.8"), False),
    (OLY, 200, "4.25", B(r"\frac{17}{4}"), True),
    (OLY, 200, "4.25", B("4.52"), False),
    (OLY, 300, r"$\frac{a b}{2}$", B(r"\frac{ab}{2}"), True),
    (OLY, 300, r"$\frac{a b}{2}$", B(r"ab"), False),
    # AIME
    (A24, 0, "204", B("204"), True),
    (A24, 0, "204", B("204.0"), True),
    (A24, 0, "204", B("240"), False),
    (A24, 0, "204", U("the walk takes 204 minutes"), False),
    (A24, 1, "113", B("113"), True),
    (A24, 1, "113", B("0113"), True),
    (A25, 0, "468", B("468"), True),
    (A25, 0, "468", B("486"), False),
    (A25, 4, r"336^\circ", B("336"), True),
    (A25, 4, r"336^\circ", B(r"336^\circ"), True),
    (A25, 4, r"336^\circ", B("24"), False),
    # AMC: float gold
    (AMC, 0, 27.0, B("27"), True),
    (AMC, 0, 27.0, B("27.0"), True),
    (AMC, 0, 27.0, B("72"), False),
    (AMC, 1, 36.0, B("36"), True),
    (AMC, 3, 3159.0, B("3159"), True),
    (AMC, 3, 3159.0, B("3,159"), True),
    (AMC, 3, 3159.0, B("3195"), False),
    # GSM8K: boxed, else the final number of a finished response
    (GSM, 0, "18", B("18"), True),
    (GSM, 0, "18", B(r"\$18"), True),
    (GSM, 0, "18", B("18 dollars"), True),
    (GSM, 0, "18", B("18.00"), True),
    (GSM, 0, "18", S("She makes 9 * 2 = 18 dollars.\n\nThe answer is 18."), True),
    (GSM, 0, "18", S("She makes $18 every day."), True),
    (GSM, 0, "18", S("The answer is 18.\n\nChecking: 16 - 3 - 4 = 9."), False),  # the final number is 9
    (GSM, 0, "18", B("16"), False),
    (GSM, 0, "18", U("16 - 3 - 4 = 9 eggs, 9 * 2 = 18"), False),
    (GSM, 0, "18", S("I cannot tell."), False),
    (GSM, 146, "2,125", B("2125"), True),
    (GSM, 146, "2,125", B("2,125"), True),
    (GSM, 146, "2,125", S("In total 2,125 dollars."), True),
    (GSM, 146, "2,125", B("2.125"), False),
    (GSM, 489, "-10", B("-10"), True),
    (GSM, 489, "-10", B("10"), False),
    (GSM, 1, "3", B(r"\frac{6}{2}"), True),
    (GSM, 1, "3", B("3.5"), False),
    (GSM, 611, "1,450,000", B(r"1{,}450{,}000"), True),
    (GSM, 611, "1,450,000", B("1450000"), True),
    (GSM, 611, "1,450,000", B("145000"), False),
    # Chinese GSM8K
    (ZH, 0, "72", B("72"), True),
    (ZH, 0, "72", S("所以她总共卖了72个夹子。"), True),
    (ZH, 0, "72", S("答案是 72"), True),
    (ZH, 0, "72", B("48"), False),
    (ZH, 0, "72", U("四月48个，五月24个，共72个"), False),
    (ZH, 1, "10", B("10元"), True),
    (ZH, 1, "10", B("12"), False),
    # GPQA: a letter, boxed or stated
    (GPQA, 0, "A", B("A"), True),
    (GPQA, 0, "A", B("(A)"), True),
    (GPQA, 0, "A", B(r"\text{A}"), True),
    (GPQA, 0, "A", B("A. 10^-4 ev"), True),
    (GPQA, 0, "A", B("a"), True),
    (GPQA, 0, "A", B("B"), False),
    (GPQA, 0, "A", B("D"), False),
    (GPQA, 0, "A", S("The answer is (A)."), True),
    (GPQA, 0, "A", S("Answer: A"), True),
    (GPQA, 0, "A", S("The correct answer is C."), False),
    (GPQA, 0, "A", U("Option A looks right"), False),
    (GPQA, 1, "A", B("C") + " No wait, $\\boxed{A}$", True),
    # StrategyQA: yes / no
    (SQA, 0, "Yes", B("Yes"), True),
    (SQA, 0, "Yes", B("yes"), True),
    (SQA, 0, "Yes", B(r"\text{Yes}"), True),
    (SQA, 0, "Yes", B("No"), False),
    (SQA, 0, "Yes", S("So the answer is yes."), True),
    (SQA, 0, "Yes", S("So the answer is no."), False),
    (SQA, 0, "Yes", S("True."), True),
    (SQA, 0, "Yes", U("I think yes"), False),
    (SQA, 1, "No", B("No"), True),
    (SQA, 1, "No", B("NO"), True),
    (SQA, 1, "No", B("Yes"), False),
    (SQA, 1, "No", S("No, it is not."), True),
    (SQA, 1, "No", B("false"), True),
]

# Where the authors' rules (`--grader paper`) and the strict grader part ways, with each verdict:
# (benchmark, idx, gold, response, strict, paper).
def T(answer: str) -> str:
    """A finished response whose only box is inside its closed thinking."""
    return f"Let me compute.\n\nSo it is \\boxed{{{answer}}}.\n</think>\n\nI am done."


RELEASE_CASES = [
    # boxed only inside a closed <think>: the release takes the last box anywhere
    (M5, 3, "9", T("9"), False, True),
    (GSM, 0, "18", T("18"), False, True),
    (OLY, 19, r"$\frac{3 m}{2}-1$", T(r"\frac{3m}{2}-1"), False, False),
    # the right answer stated without a box: the release finds no answer
    (GSM, 49, "30", S("The answer is 30."), True, False),
    (GSM, 106, "72", S("#### 72"), True, False),
    (ZH, 26, "400", S("答案：400"), True, False),
    (GPQA, 0, "A", S("The correct choice is (A)."), True, False),
    (SQA, 0, "Yes", S("**Yes**"), True, False),
    # forms the release rejects
    (SQA, 0, "Yes", B("True"), True, False),
    (SQA, 1, "No", B("False"), True, False),
    (SQA, 1, "No", B("No, it is not possible"), True, False),
    (ZH, 36, "15", B("15英里"), True, False),
    (GSM, 20, "15", B("15 dollars"), True, False),
    (M5, 4, r"\text{Evelyn}", B(r"\textbf{Evelyn}"), True, False),
    (OLY, 19, r"$\frac{3 m}{2}-1$", B(r"\frac{3m}{2}-1"), True, False),
    # numbers: the release is within 1e-4 absolute (not relative), the gold also x100 and /100
    (GSM, 2, "70000", B("69999"), False, False),
    (GSM, 0, "18", B("0.18"), False, True),
    (GSM, 0, "18", B("1800"), False, True),
    (GSM, 0, "18", B("18.00001"), False, True),
    # and where both agree
    (GSM, 0, "18", B("18"), True, True),
    (M5, 2, r"\frac{14}{3}", B("14/3"), True, True),
    (M5, 0, r"\left( 3, \frac{\pi}{2} \right)", B(r"(3, \frac{\pi}{2})"), True, True),
    (GPQA, 0, "A", B("A"), True, True),
    (SQA, 0, "Yes", B("Yes"), True, True),
]
