/*
** choice.c — reading a model's multiple-choice answer as TowerVision's lmms-eval fork does for
** ALM-Bench (tasks/alm_bench/utils.py), with its two generations of scoring:
**
**   - letters (the later one, the "option letter" prompt): extract_final_answer_alm_bench tries
**     four regular expressions in turn on the stripped output and returns the letter, lowercased,
**     or None (no answer, scored 0); the item is right when it equals the letter of the true
**     option. tw_mc_letter.
**   - option text (the earlier one, benchmarks/alm_bench/README): lmms_eval.utils'
**     extract_final_answer takes what follows "\nFinal Answer:", and the item is right when it
**     equals the true option's text. tw_mc_final_answer_text.
**
** The regular expressions are matched by hand below, each with the backtracking it can do worked
** out (they are small); the comments give each pattern. Python's re on str patterns: \s is
** str.isspace, (?i) makes [a-zA-Z] also take U+0130 İ, U+0131 ı, U+017F ſ and U+212A K (Kelvin),
** and the literal "i" of "Final Answer:" also İ and ı, the "s" also ſ (found by running every
** code point through re).
*/
#include "eval.h"
#include "pystr.h"

/* (?i)[a-zA-Z]: the letter's index 0..25, TW_MC_OTHER for İ ı ſ (their lower() is no a..z), or
** -3 when c is no such letter. The Kelvin sign lowers to k. */
static int letter_ci(uint32_t c) {
    if (c >= 'a' && c <= 'z') return (int)(c - 'a');
    if (c >= 'A' && c <= 'Z') return (int)(c - 'A');
    if (c == 0x212A) return 'k' - 'a';
    if (c == 0x130 || c == 0x131 || c == 0x17F) return TW_MC_OTHER;
    return -3;
}

/* [A-Za-z] without (?i): ASCII only. */
static int letter_ascii(uint32_t c) {
    if (c >= 'a' && c <= 'z') return (int)(c - 'a');
    if (c >= 'A' && c <= 'Z') return (int)(c - 'A');
    return -3;
}

/* One character of a (?i) literal: c matches the ASCII pattern character p. */
static bool lit_ci(uint32_t c, char p) {
    if (c < 0x80) return c == (uint8_t)p || (p >= 'a' && p <= 'z' && c == (uint32_t)(p - 32));
    if (p == 'i') return c == 0x130 || c == 0x131;
    if (p == 's') return c == 0x17F;
    if (p == 'k') return c == 0x212A;
    return false;
}

/* v[i..] starts with the (?i) literal lit (lowercase ASCII); *end past it. */
static bool starts_ci(const uint32_t *v, size_t n, size_t i, const char *lit, size_t *end) {
    for (; *lit; lit++, i++)
        if (i >= n || !lit_ci(v[i], *lit)) return false;
    *end = i;
    return true;
}

static size_t skip_space(const uint32_t *v, size_t n, size_t i) {
    while (i < n && tw_py_isspace(v[i])) i++;
    return i;
}

static int parse_letter(const uint32_t *v, size_t n) {
    int l;
    /* (1) ^\(?([a-zA-Z])\)?$ with re.IGNORECASE, re.match: the whole text ($ could also stand
    ** before a final "\n", which the strip removed). */
    {
        size_t i = 0;
        if (i < n && v[i] == '(' && n >= 2 && letter_ci(v[1]) != -3) i++;
        if (i < n && (l = letter_ci(v[i])) != -3) {
            size_t j = i + 1;
            if (j < n && v[j] == ')') j++;
            if (j == n) return l;
        }
    }
    /* (2) (?i)(?:Final Answer:|Answer:)\s*\(?([a-zA-Z])\)?, re.search: the leftmost start where a
    ** marker is followed by whitespace, an optional "(" and a letter. Whether "(" is taken never
    ** changes the outcome: "(" is no letter. */
    for (size_t p = 0; p < n; p++) {
        static const char *const markers[] = {"final answer:", "answer:"};
        for (int k = 0; k < 2; k++) {
            size_t i;
            if (!starts_ci(v, n, p, markers[k], &i)) continue;
            i = skip_space(v, n, i);
            if (i < n && v[i] == '(' && i + 1 < n && letter_ci(v[i + 1]) != -3) i++;
            if (i < n && (l = letter_ci(v[i])) != -3) return l;
        }
    }
    /* (3) (?i)^\(?([a-zA-Z])\)?\)\s+.* with DOTALL, re.match: a letter, then ")" and whitespace,
    ** or "))" and whitespace. */
    {
        size_t i = 0;
        for (int open = 1; open >= 0; open--) {          /* "(" taken, then not */
            i = open ? 1 : 0;
            if (open && !(n > 0 && v[0] == '(')) continue;
            if (i >= n || (l = letter_ci(v[i])) == -3) continue;
            size_t j = i + 1;
            if (j + 1 < n && v[j] == ')' && v[j + 1] == ')' && j + 2 < n && tw_py_isspace(v[j + 2])) return l;
            if (j < n && v[j] == ')' && j + 1 < n && tw_py_isspace(v[j + 1])) return l;
        }
    }
    /* (4) (?m)^\s*\(?([A-Za-z])\)?\s*\), re.search: at the start or after a "\n", whitespace
    ** (which may cross lines), an optional "(", an ASCII letter, then whitespace and ")" (the
    ** optional ")" before the whitespace only ever helps when a second ")" follows, and then
    ** the plain reading matches too). */
    for (size_t p = 0; p < n; p++) {
        if (p > 0 && v[p - 1] != '\n') continue;
        size_t i = skip_space(v, n, p);
        for (int open = 1; open >= 0; open--) {
            size_t k = i;
            if (open) {
                if (!(k < n && v[k] == '(')) continue;
                k++;
            }
            if (k >= n || (l = letter_ascii(v[k])) == -3) continue;
            size_t j = skip_space(v, n, k + 1);
            if (j < n && v[j] == ')') return l;
        }
    }
    return TW_MC_NONE;
}

int tw_mc_letter(const char *output) {
    if (!output) return TW_MC_NONE;
    tw_u32s v = {0};
    int l = TW_MC_NONE;
    if (tw_py_decode(output, strlen(output), &v) == TW_OK) {
        size_t b, e;
        tw_py_strip(v.v, v.n, &b, &e);
        l = parse_letter(v.v + b, e - b);
    }
    tw_u32s_free(&v);
    return l;
}

/* ---- the true option ------------------------------------------------------------------------ */

/* lower().strip() of text into out (code points). */
static tw_status lower_strip(const char *text, tw_u32s *out) {
    tw_u32s raw = {0}, low = {0};
    tw_status s = tw_py_decode(text, strlen(text), &raw);
    if (s == TW_OK) s = tw_py_lower(raw.v, raw.n, &low);
    if (s == TW_OK) {
        size_t b, e;
        tw_py_strip(low.v, low.n, &b, &e);
        out->n = 0;
        s = tw_u32s_append(out, low.v + b, e - b);
    }
    tw_u32s_free(&raw);
    tw_u32s_free(&low);
    return s;
}

int tw_mc_option_index(const char *answer, const char *const *options, size_t n_options) {
    if (!answer || (n_options && !options)) return -1;
    tw_u32s a = {0}, o = {0};
    int found = -1;
    if (lower_strip(answer, &a) == TW_OK)
        for (size_t i = 0; i < n_options && found < 0 && i < (size_t)INT32_MAX; i++)
            if (options[i] && lower_strip(options[i], &o) == TW_OK && tw_u32_eq(a.v, a.n, o.v, o.n))
                found = (int)i;
    tw_u32s_free(&a);
    tw_u32s_free(&o);
    return found;
}

/* ---- option text after "Final Answer:" ------------------------------------------------------ */

tw_status tw_mc_final_answer_text(const char *output, const char *true_option, char **answer, int *match) {
    if (!output || (match && !true_option)) return tw_err(TW_E_ARG, "tw_mc_final_answer_text: NULL argument");
    tw_u32s v = {0};
    TW_TRY(tw_py_decode(output, strlen(output), &v));
    /* re.search(r'\nFinal Answer:\s*(.*)', text): case-sensitive, a "\n" first; \s* may cross
    ** lines, (.*) stops before the next "\n"; no match: the whole text. */
    static const char marker[] = "\nFinal Answer:";
    size_t b = 0, e = v.n;
    for (size_t p = 0; p + sizeof marker - 1 <= v.n; p++) {
        size_t k = 0;
        while (k < sizeof marker - 1 && v.v[p + k] == (uint8_t)marker[k]) k++;
        if (k < sizeof marker - 1) continue;
        b = skip_space(v.v, v.n, p + k);
        for (e = b; e < v.n && v.v[e] != '\n'; e++) {}
        break;
    }
    /* re.sub(r" \n [\s\S]*$", "", pred): everything from the first " \n " on goes. */
    for (size_t i = b; i + 3 <= e; i++)
        if (v.v[i] == ' ' && v.v[i + 1] == '\n' && v.v[i + 2] == ' ') { e = i; break; }
    tw_status s = TW_OK;
    if (match) {
        /* exact_match(pred, target.strip(".")) */
        tw_u32s t = {0};
        s = tw_py_decode(true_option, strlen(true_option), &t);
        if (s == TW_OK) {
            size_t tb = 0, te = t.n;
            while (tb < te && t.v[tb] == '.') tb++;
            while (te > tb && t.v[te - 1] == '.') te--;
            *match = tw_u32_eq(v.v + b, e - b, t.v + tb, te - tb);
        }
        tw_u32s_free(&t);
    }
    if (s == TW_OK && answer) s = tw_py_encode(v.v + b, e - b, answer, NULL);
    tw_u32s_free(&v);
    return s;
}
