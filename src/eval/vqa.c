/*
** vqa.c — TextVQA's accuracy as TowerVision's lmms-eval fork computes it (tasks/textvqa/utils.py
** over tasks/_task_utils/vqa_eval_metric.py, itself MMF's EvalAIAnswerProcessor; MMF's
** TextVQAAccuracyEvaluator gives the same numbers): every answer, the model's and the humans',
** goes through the EvalAI normalisation below, then the prediction is scored against the n
** human answers. docs/eval.md lists the quirks kept on purpose.
**
** The normalisation, step by step as the reference runs it (on code points, with CPython's
** str.lower / isspace / re \d, src/eval/pystr.c):
**   1. lowercase; delete every "," and "?"; "'s" -> " 's"; strip
**   2. "\n" and "\t" -> " "; strip
**   3. punctuation: for each mark of PUNCT, if the text (as it was before this step) has the
**      mark followed by a space or preceded by one, or a digit-commas-digit run (never, after
**      step 1), delete the mark everywhere, else turn it into a space everywhere; then delete
**      each "." not followed by a decimal digit, at most 32 of them (the reference passes
**      re.UNICODE, 32, where re.sub takes its count)
**   4. lowercase again; split on whitespace; number words to digits; drop a, an, the; map
**      contractions; join with single spaces
*/
#include "eval.h"
#include "pystr.h"

#include <math.h>

/* The marks of step 3, in the reference's order (the order does not change the result: each mark
** is tested against the text before the step and replaced by "" or " "). */
static const char PUNCT[] = ";/[]\"{}()=+\\_-><@`,?!";

static const char *const NUMBER_WORDS[][2] = {
    {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"}, {"three", "3"}, {"four", "4"},
    {"five", "5"}, {"six", "6"}, {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"},
};
static const char *const ARTICLES[] = {"a", "an", "the"};

/* The contractions table of the EvalAI processor, entry for entry. Keys with a capital ("Im")
** and keys holding "'s" ("let's") can never match (words are lowercase, and step 1 split "'s"
** off), and "somebody'd" maps to "somebodyd": kept as the reference has them. */
static const char *const CONTRACTIONS[][2] = {
    {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"},
    {"couldnt", "couldn't"}, {"couldn'tve", "couldn't've"}, {"couldnt've", "couldn't've"},
    {"didnt", "didn't"}, {"doesnt", "doesn't"}, {"dont", "don't"}, {"hadnt", "hadn't"},
    {"hadnt've", "hadn't've"}, {"hadn'tve", "hadn't've"}, {"hasnt", "hasn't"},
    {"havent", "haven't"}, {"hed", "he'd"}, {"hed've", "he'd've"}, {"he'dve", "he'd've"},
    {"hes", "he's"}, {"howd", "how'd"}, {"howll", "how'll"}, {"hows", "how's"},
    {"Id've", "I'd've"}, {"I'dve", "I'd've"}, {"Im", "I'm"}, {"Ive", "I've"}, {"isnt", "isn't"},
    {"itd", "it'd"}, {"itd've", "it'd've"}, {"it'dve", "it'd've"}, {"itll", "it'll"},
    {"let's", "let's"}, {"maam", "ma'am"}, {"mightnt", "mightn't"},
    {"mightnt've", "mightn't've"}, {"mightn'tve", "mightn't've"}, {"mightve", "might've"},
    {"mustnt", "mustn't"}, {"mustve", "must've"}, {"neednt", "needn't"}, {"notve", "not've"},
    {"oclock", "o'clock"}, {"oughtnt", "oughtn't"}, {"ow's'at", "'ow's'at"},
    {"'ows'at", "'ow's'at"}, {"'ow'sat", "'ow's'at"}, {"shant", "shan't"},
    {"shed've", "she'd've"}, {"she'dve", "she'd've"}, {"she's", "she's"},
    {"shouldve", "should've"}, {"shouldnt", "shouldn't"}, {"shouldnt've", "shouldn't've"},
    {"shouldn'tve", "shouldn't've"}, {"somebody'd", "somebodyd"},
    {"somebodyd've", "somebody'd've"}, {"somebody'dve", "somebody'd've"},
    {"somebodyll", "somebody'll"}, {"somebodys", "somebody's"}, {"someoned", "someone'd"},
    {"someoned've", "someone'd've"}, {"someone'dve", "someone'd've"},
    {"someonell", "someone'll"}, {"someones", "someone's"}, {"somethingd", "something'd"},
    {"somethingd've", "something'd've"}, {"something'dve", "something'd've"},
    {"somethingll", "something'll"}, {"thats", "that's"}, {"thered", "there'd"},
    {"thered've", "there'd've"}, {"there'dve", "there'd've"}, {"therere", "there're"},
    {"theres", "there's"}, {"theyd", "they'd"}, {"theyd've", "they'd've"},
    {"they'dve", "they'd've"}, {"theyll", "they'll"}, {"theyre", "they're"},
    {"theyve", "they've"}, {"twas", "'twas"}, {"wasnt", "wasn't"}, {"wed've", "we'd've"},
    {"we'dve", "we'd've"}, {"weve", "we've"}, {"werent", "weren't"}, {"whatll", "what'll"},
    {"whatre", "what're"}, {"whats", "what's"}, {"whatve", "what've"}, {"whens", "when's"},
    {"whered", "where'd"}, {"wheres", "where's"}, {"whereve", "where've"}, {"whod", "who'd"},
    {"whod've", "who'd've"}, {"who'dve", "who'd've"}, {"wholl", "who'll"}, {"whos", "who's"},
    {"whove", "who've"}, {"whyll", "why'll"}, {"whyre", "why're"}, {"whys", "why's"},
    {"wont", "won't"}, {"wouldve", "would've"}, {"wouldnt", "wouldn't"},
    {"wouldnt've", "wouldn't've"}, {"wouldn'tve", "wouldn't've"}, {"yall", "y'all"},
    {"yall'll", "y'all'll"}, {"y'allll", "y'all'll"}, {"yall'd've", "y'all'd've"},
    {"y'alld've", "y'all'd've"}, {"y'all'dve", "y'all'd've"}, {"youd", "you'd"},
    {"youd've", "you'd've"}, {"you'dve", "you'd've"}, {"youll", "you'll"},
    {"youre", "you're"}, {"youve", "you've"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A word (code points) equal to an ASCII key. */
static bool eq_ascii(const uint32_t *w, size_t n, const char *key) {
    size_t i = 0;
    for (; i < n && key[i]; i++)
        if (w[i] != (uint8_t)key[i]) return false;
    return i == n && key[i] == 0;
}

static tw_status push_ascii(tw_u32s *s, const char *a) {
    for (; *a; a++) TW_TRY(tw_u32s_push(s, (uint8_t)*a));
    return TW_OK;
}

static bool has_pair(const uint32_t *v, size_t n, uint32_t a, uint32_t b) {
    for (size_t i = 0; i + 1 < n; i++)
        if (v[i] == a && v[i + 1] == b) return true;
    return false;
}

/* COMMA_STRIP: a digit, one or more commas, a digit. */
static bool digit_commas_digit(const uint32_t *v, size_t n) {
    for (size_t i = 1; i < n; i++) {
        if (v[i] != ',' || !tw_py_isdecimal(v[i - 1])) continue;
        size_t j = i;
        while (j < n && v[j] == ',') j++;
        if (j < n && tw_py_isdecimal(v[j])) return true;
        i = j;
    }
    return false;
}

/* ---- step 4: words ---------------------------------------------------------------------------- */

typedef struct words_ctx {
    tw_u32s *out;
} words_ctx;

static tw_status add_word(void *ctx, const uint32_t *w, size_t n) {
    tw_u32s *out = ((words_ctx *)ctx)->out;
    const char *mapped = NULL;
    for (size_t k = 0; k < COUNT(NUMBER_WORDS) && !mapped; k++)
        if (eq_ascii(w, n, NUMBER_WORDS[k][0])) mapped = NUMBER_WORDS[k][1];
    if (!mapped)
        for (size_t k = 0; k < COUNT(ARTICLES); k++)
            if (eq_ascii(w, n, ARTICLES[k])) return TW_OK;
    /* Contractions are looked up after the number words (a digit never is a key). */
    if (!mapped)
        for (size_t k = 0; k < COUNT(CONTRACTIONS) && !mapped; k++)
            if (eq_ascii(w, n, CONTRACTIONS[k][0])) mapped = CONTRACTIONS[k][1];
    if (out->n) TW_TRY(tw_u32s_push(out, ' '));
    return mapped ? push_ascii(out, mapped) : tw_u32s_append(out, w, n);
}

/* The whole processor on code points: the normalised answer into out, which starts empty. */
static tw_status normalize(const uint32_t *in, size_t n_in, tw_u32s *out) {
    tw_u32s a = {0}, b = {0};
    tw_status s;
    /* 1. word_tokenize: lower, drop "," "?", "'s" -> " 's", strip */
    if ((s = tw_py_lower(in, n_in, &a)) != TW_OK) goto done;
    for (size_t i = 0; i < a.n; i++) {
        uint32_t c = a.v[i];
        if (c == ',' || c == '?') continue;
        if ((s = tw_u32s_push(&b, c)) != TW_OK) goto done;
    }
    a.n = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (b.v[i] == '\'' && i + 1 < b.n && b.v[i + 1] == 's') {
            if ((s = tw_u32s_push(&a, ' ')) != TW_OK) goto done;
        }
        if ((s = tw_u32s_push(&a, b.v[i])) != TW_OK) goto done;
    }
    /* 2. strip, newlines and tabs to spaces, strip */
    size_t lo, hi;
    tw_py_strip(a.v, a.n, &lo, &hi);
    b.n = 0;
    for (size_t i = lo; i < hi; i++) {
        uint32_t c = a.v[i] == '\n' || a.v[i] == '\t' ? ' ' : a.v[i];
        if ((s = tw_u32s_push(&b, c)) != TW_OK) goto done;
    }
    tw_py_strip(b.v, b.n, &lo, &hi);
    const uint32_t *t = b.v + lo;
    size_t nt = hi - lo;
    /* 3. punctuation, judged on t as it is now */
    bool digits = digit_commas_digit(t, nt);
    bool drop[sizeof PUNCT - 1];
    for (size_t k = 0; k < sizeof PUNCT - 1; k++) {
        uint32_t p = (uint8_t)PUNCT[k];
        drop[k] = has_pair(t, nt, p, ' ') || has_pair(t, nt, ' ', p) || digits;
    }
    tw_u32s c = {0};
    for (size_t i = 0; i < nt && s == TW_OK; i++) {
        const char *m = t[i] < 0x80 ? strchr(PUNCT, (int)t[i]) : NULL;
        if (m && t[i]) {
            if (!drop[m - PUNCT]) s = tw_u32s_push(&c, ' ');
        } else {
            s = tw_u32s_push(&c, t[i]);
        }
    }
    if (s == TW_OK) {
        a.n = 0;
        int removed = 0;   /* PERIOD_STRIP looks ahead in the text before its own removals */
        for (size_t i = 0; i < c.n && s == TW_OK; i++) {
            if (c.v[i] == '.' && removed < 32 && !(i + 1 < c.n && tw_py_isdecimal(c.v[i + 1]))) {
                removed++;
                continue;
            }
            s = tw_u32s_push(&a, c.v[i]);
        }
    }
    tw_u32s_free(&c);
    if (s != TW_OK) goto done;
    /* 4. digits, articles, contractions */
    b.n = 0;
    if ((s = tw_py_lower(a.v, a.n, &b)) != TW_OK) goto done;
    words_ctx wc = {out};
    s = tw_py_split(b.v, b.n, add_word, &wc);
done:
    tw_u32s_free(&a);
    tw_u32s_free(&b);
    return s;
}

static tw_status normalize_utf8(const char *text, tw_u32s *out) {
    tw_u32s in = {0};
    tw_status s = tw_py_decode(text, strlen(text), &in);
    if (s == TW_OK) s = normalize(in.v, in.n, out);
    tw_u32s_free(&in);
    return s;
}

tw_status tw_vqa_normalize(const char *answer, char **out) {
    if (!answer || !out) return tw_err(TW_E_ARG, "tw_vqa_normalize: NULL argument");
    tw_u32s n = {0};
    tw_status s = normalize_utf8(answer, &n);
    if (s == TW_OK) s = tw_py_encode(n.v, n.n, out, NULL);
    tw_u32s_free(&n);
    return s;
}

/* ---- accuracy ------------------------------------------------------------------------------- */

static int bitlen128(unsigned __int128 x) {
    int b = 0;
    while (x) { b++; x >>= 1; }
    return b;
}

/* num / den rounded once to the nearest double, ties to even: what Python's int / int gives, and
** so statistics.mean, which sums its floats exactly as fractions. 0 < den < 2^72, num < 2^72.
** unsigned __int128 is GCC's and Clang's on every 64-bit target the engine builds for. */
static double ratio_to_double(unsigned __int128 num, unsigned __int128 den) {
    if (num == 0) return 0.0;
    int s = 55 - (bitlen128(num) - bitlen128(den));   /* q = num 2^s / den has 55 or 56 bits */
    TW_ASSERT(s >= 0 && bitlen128(den) + 55 <= 127);
    unsigned __int128 x = num << s, q = x / den, r = x % den;
    int e = bitlen128(q) - 53;                          /* bits below the 53 kept */
    unsigned __int128 low = q & (((unsigned __int128)1 << e) - 1), half = (unsigned __int128)1 << (e - 1);
    uint64_t m = (uint64_t)(q >> e);
    if (low > half || (low == half && (r != 0 || (m & 1)))) m++;
    return ldexp((double)m, e - s);
}

tw_status tw_vqa_accuracy(const char *pred, const char *const *answers, size_t n_answers,
                          tw_vqa_rule rule, double *acc) {
    if (!pred || !acc || (n_answers && !answers))
        return tw_err(TW_E_ARG, "tw_vqa_accuracy: NULL argument");
    if (n_answers == 0 || n_answers > 65536)
        return tw_err(TW_E_ARG, "tw_vqa_accuracy: %zu answers (1 to 65536)", n_answers);
    if (rule != TW_VQA_LEAVE_ONE_OUT && rule != TW_VQA_PLAIN)
        return tw_err(TW_E_ARG, "tw_vqa_accuracy: unknown rule %d", (int)rule);
    for (size_t i = 0; i < n_answers; i++)
        if (!answers[i]) return tw_err(TW_E_ARG, "tw_vqa_accuracy: answer %zu is NULL", i);

    tw_u32s p = {0}, g = {0};
    bool *eq = tw_calloc(n_answers, sizeof *eq);
    tw_status s = eq ? normalize_utf8(pred, &p) : TW_E_NOMEM;
    size_t matches = 0;
    for (size_t i = 0; i < n_answers && s == TW_OK; i++) {
        g.n = 0;
        s = normalize_utf8(answers[i], &g);
        if (s == TW_OK && tw_u32_eq(p.v, p.n, g.v, g.n)) { eq[i] = true; matches++; }
    }
    if (s == TW_OK) {
        if (rule == TW_VQA_PLAIN) {
            *acc = matches >= 3 ? 1.0 : (double)matches / 3;
        } else {
            /* Leaving answer i out, the others match matches - eq[i] times; each subset scores
            ** min(1, m / 3): 0, fl(1/3), fl(2/3) = 2 fl(1/3), or 1. Their exact mean is
            ** (k fl(1/3) + ones) / n with k = #m==1 + 2 #m==2, fl(1/3) = M 2^-54. */
            const uint64_t M = 6004799503160661u;
            uint64_t k = 0, ones = 0;
            for (size_t i = 0; i < n_answers; i++) {
                size_t m = matches - eq[i];
                if (m >= 3) ones++;
                else k += m;
            }
            unsigned __int128 num = (unsigned __int128)k * M + ((unsigned __int128)ones << 54);
            unsigned __int128 den = (unsigned __int128)n_answers << 54;
            *acc = ratio_to_double(num, den);
        }
    }
    free(eq);
    tw_u32s_free(&p);
    tw_u32s_free(&g);
    return s;
}
