/*
** test_chat_template.c — the chat-template interpreter (src/text/jinja.c) against reference renderings:
** the shared fixture conversations rendered by transformers.js with the Gemma-2 and TowerVision
** templates, a table of language-feature cases and real-world templates whose expected outputs
** were produced by Python jinja2 configured as transformers configures it (trim_blocks,
** lstrip_blocks, loopcontrols, transformers' tojson), plus syntax errors and runaway guards.
*/
#include "jinja.h"
#include "testhelp.h"

typedef struct jj_case {
    const char *name, *source, *context;   /* context NULL: CTX_UNIT */
    int         is_error;                  /* expected: TW_E_TEMPLATE with message `expected` */
    const char *expected;
} jj_case;

/* ---- generated with Python jinja2 3.1.6 (see docs/chat-templates.md) ---- */
static const char *const CTX_UNIT = "{\"messages\": [{\"role\": \"system\", \"content\": \"You are helpful.\"}, {\"role\": \"use"
        "r\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"rol"
        "e\": \"user\", \"content\": [{\"type\": \"image\"}, {\"type\": \"text\", \"text\": \"What i"
        "s this\077\"}]}], \"add_generation_prompt\": true, \"bos_token\": \"<bos>\", \"eos_token\":"
        " \"<eos>\", \"xs\": [3, 1, 2], \"d\": {\"b\": 1, \"a\": 2, \"c\": null}, \"s\": \"  Hello W"
        "orld  \", \"n\": 7, \"f\": 2.5, \"tools\": [{\"type\": \"function\", \"function\": {\"name\""
        ": \"get_weather\", \"description\": \"Get weather\", \"parameters\": {\"type\": \"object\","
        " \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}]}";
static const jj_case JJ_CASES[] = {
    { "unit-0",
      "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex"
        "0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}",
      NULL,
      0, "1043TrueFalse4|2132FalseFalse4|3221FalseFalse4|4310FalseTrue4|" },
    { "unit-1",
      "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else 'none' }}-{{ "
        "loop.nextitem.role if loop.nextitem is defined }};{% endfor %}",
      NULL,
      0, "none-user;system-assistant;user-user;assistant-;" },
    { "unit-2",
      "{% for x in [] %}a{% else %}empty{% endfor %}",
      NULL,
      0, "empty" },
    { "unit-3",
      "{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}",
      NULL,
      0, "b=1,a=2,c=None," },
    { "unit-4",
      "{% for x in xs if x > 1 %}{{ x }}{{ loop.length }}{% endfor %}",
      NULL,
      0, "3222" },
    { "unit-5",
      "{% if n > 5 %}big{% elif n > 2 %}mid{% else %}small{% endif %}",
      NULL,
      0, "big" },
    { "unit-6",
      "{% set x = 1 %}{% for i in xs %}{% set x = i %}{% endfor %}{{ x }}",
      NULL,
      0, "1" },
    { "unit-7",
      "{% set ns = namespace(x=1, y='a') %}{% for i in xs %}{% set ns.x = ns.x + i %}{% endfor %}{"
        "{ ns.x }}{{ ns.y }}",
      NULL,
      0, "7a" },
    { "unit-8",
      "{% set x %}block {{ n }}{% endset %}[{{ x }}]",
      NULL,
      0, "[block 7]" },
    { "unit-9",
      "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet("
        "'Bob') }} {{ greet('Al', greeting='Hi') }} {{ greet('C', 'Yo') }}",
      NULL,
      0, "Hello, Bob! Hi, Al! Yo, C!" },
    { "unit-10",
      "{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}inner {{ n }}{% endcall %}",
      NULL,
      0, "<inner 7>" },
    { "unit-11",
      "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{"
        "% endif %}{{ i }}{% endfor %}",
      NULL,
      0, "0134" },
    { "unit-12",
      "{% raw %}{{ not parsed }} {% if %}{% endraw %}",
      NULL,
      0, "{{ not parsed }} {% if %}" },
    { "unit-13",
      "{{ 'a' }}{{ \"b\" }}{{ 1 }}{{ -1 }}{{ 1.5 }}{{ True }}{{ true }}{{ None }}{{ none }}{{ [1, "
        "'x'] }}{{ {'k': 'v'} }}",
      NULL,
      0, "ab1-11.5TrueTrueNoneNone[1, 'x']{'k': 'v'}" },
    { "unit-14",
      "{{ xs[0] }}{{ xs[-1] }}{{ xs[1:] }}{{ xs[::-1] }}{{ s[2:7] }}{{ 'hello'[::-1] }}{{ d['a'] }"
        "}{{ d.b }}{{ xs[:-1] }}{{ xs[5] }}",
      NULL,
      0, "32[1, 2][2, 1, 3]Helloolleh21[3, 1]" },
    { "unit-15",
      "{{ 7 + 2 }} {{ 7 - 2 }} {{ 7 * 2 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ -"
        "7 // 2 }} {{ -7 % 3 }} {{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ 1.5 + 1 }} {{ 4 / 2 }}",
      NULL,
      0, "9 5 14 3.5 3 1 1024 -4 2 a1None ababab 2.5 2.0" },
    { "unit-16",
      "{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' == 'a' }} {{ 1 != 1 }} {{ 1 == 1.0 }} {{ 1 < 2 < 3 }} {{ 'a"
        "' in 'cat' }} {{ 5 not in xs }} {{ 'a' in d }}",
      NULL,
      0, "True False True False True True True True True" },
    { "unit-17",
      "{{ true and false }} {{ true or false }} {{ not true }} {{ 0 or 'x' }} {{ '' and 1 }} {{ no"
        "t [] }} {{ 'y' if n else 'z' }} [{{ 'y' if not n }}]",
      NULL,
      0, "False True False x  True y []" },
    { "unit-18",
      "{{ undefined_var }}|{{ undefined_var is defined }}|{{ undefined_var is undefined }}|{{ d.zz"
        "z is defined }}|{% if undefined_var %}t{% else %}f{% endif %}",
      NULL,
      0, "|False|True|False|f" },
    { "unit-19",
      "{{ none is none }} {{ 's' is string }} {{ 1 is number }} {{ 1 is integer }} {{ 1.0 is integ"
        "er }} {{ d is mapping }} {{ xs is iterable }} {{ 's' is sequence }} {{ true is boolean }} {"
        "{ true is true }} {{ false is false }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3"
        " }} {{ 9 is divisibleby(4) }} {{ 1 is equalto 1 }} {{ 2 is eq 3 }} {{ 2 is in xs }} {{ 1 is"
        " not none }} {{ xs is not string }}",
      NULL,
      0, "True True True True False True True True True True True True True True False True False Tru"
        "e True True" },
    { "unit-20",
      "[{{ s|trim }}][{{ s|length }}][{{ xs|count }}][{{ s|upper }}][{{ s|lower }}][{{ 'hello wORL"
        "D-foo (bar'|title }}][{{ 'hELLO wORLD'|capitalize }}][{{ s|replace('l', 'L') }}][{{ xs|join"
        "(', ') }}][{{ xs|first }}][{{ xs|last }}]",
      NULL,
      0, "[Hello World][15][3][  HELLO WORLD  ][  hello world  ][Hello World-Foo (Bar][Hello world][ "
        " HeLLo WorLd  ][3, 1, 2][3][2]" },
    { "unit-21",
      "[{{ undefined_var|default('dflt') }}][{{ ''|default('e', true) }}][{{ ''|d('e') }}][{{ none"
        "|default('n') }}][{{ 0|default(5, boolean=true) }}]",
      NULL,
      0, "[dflt][e][][None][5]" },
    { "unit-22",
      "{{ d|tojson }}|{{ messages[:2]|tojson(indent=2) }}|{{ '\303\251\"\\n<>'|tojson }}|{{ [1.5, "
        "2.0, none, true]|tojson }}|{{ tools|tojson }}",
      NULL,
      0, "{\"b\": 1, \"a\": 2, \"c\": null}|[\n  {\n    \"role\": \"system\",\n"
        "    \"content\": \"You are helpful.\"\n  },\n  {\n    \"role\": \"user\",\n"
        "    \"content\": \"Hi there\"\n  }\n]|\"\303\251\\\"\\n<>\"|[1.5, 2.0, null, true]|[{\"type"
        "\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get weather\""
        ", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}"
        ", \"required\": [\"city\"]}}}]" },
    { "unit-23",
      "{{ 1|string ~ 'x' }} {{ '42'|int + 1 }} {{ 'x'|int }} {{ '3.5'|float }} {{ 3|float }} {{ 'a"
        "b'|list }} {% for k, v in d|items %}{{ k }}{{ v }}{% endfor %} {% for k, v in d|dictsort %}"
        "{{ k }}{{ v }}{% endfor %} {{ d|items|list|length }}",
      NULL,
      0, "1x 43 0 3.5 3.0 ['a', 'b'] b1a2cNone a2b1cNone 3" },
    { "unit-24",
      "{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='role')|list }} {{ messages"
        "|rejectattr('role', 'eq', 'user')|list|length }} {{ messages|selectattr('role')|list|length"
        " }}",
      NULL,
      0, "['user', 'user'] 2 4" },
    { "unit-25",
      "{{ xs|select('odd')|list }} {{ xs|reject('odd')|list }} {{ [1,2,1,'a','A']|unique|list }} {"
        "{ xs|reverse|list }} {{ xs|sort }} {{ xs|sort(reverse=true) }} {{ xs|min }} {{ xs|max }} {{"
        " xs|sum }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ 3.5|round }}",
      NULL,
      0, "[3, 1] [2] [1, 2, 'a'] [2, 1, 3] [1, 2, 3] [3, 2, 1] 1 3 6 3 2.57 2.0 4.0" },
    { "unit-26",
      "{{ 'a\nb\nc'|indent(2) }}|{{ 'a\nb'|indent(4, true) }}|{{ '<a & b>'|e }}|{{ '<x>'|safe }}|{"
        "{ 'one two  three'|wordcount }}|[{{ 'ab'|center(7) }}]|{{ xs|batch(2)|list }}|{{ [1,2,3,4,5"
        "]|batch(2, 0)|list }}",
      NULL,
      0, "a\n  b\n  c|    a\n    b|&lt;a &amp; b&gt;|<x>|3|[   ab  ]|[[3, 1], [2]]|[[1, 2], [3, 4], ["
        "5, 0]]" },
    { "unit-27",
      "{{ '  xx  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|"
        "{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a,b,c'.split(',') }}|{{ '"
        " a  b '.split() }}|{{ 'Ab'.lower() }}{{ 'Ab'.upper() }}|{{ 'hello world'.title() }}|{{ 'aaa"
        "'.replace('a', 'b', 2) }}|{{ 'hello'.find('l') }}|{{ 'hello'.count('l') }}|{{ '{} and {}'.f"
        "ormat(1, 'x') }}",
      NULL,
      0, "xx|hi|a|a|True|True|['a', 'b', 'c']|['a', 'b']|abAB|Hello World|bba|2|2|1 and x" },
    { "unit-28",
      "{{ d.items()|list|length }} {{ d.items()|first|first }} {{ d.keys()|list }} {{ d.values()|l"
        "ist }} {{ d.get('a') }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }}",
      NULL,
      0, "3 b ['b', 'a', 'c'] [1, 2, None] 2 dflt None" },
    { "unit-29",
      "a\n  {% if true %}\n    x\n  {% endif %}\nb\n",
      NULL,
      0, "a\n    x\nb" },
    { "unit-30",
      "a  {%- if true -%}  x  {%- endif -%}  b {{- ' c ' -}} d {# comment #} e\n"
        "{# c2 #}\nf",
      NULL,
      0, "axb c d  e\nf" },
    { "unit-31",
      "{% for m in messages %}\n  {{ m.role }}\n{% endfor %}\n",
      NULL,
      0, "  system\n  user\n  assistant\n  user\n" },
    { "unit-32",
      "  {%+ if true %}x{% endif +%}\ny",
      NULL,
      0, "  x\ny" },
    { "unit-33",
      "{{ messages[0]['content'] }}{{ messages[3].content[1].text }}{{ messages[3]['content'][0]['"
        "type'] }}",
      NULL,
      0, "You are helpful.What is this\077image" },
    { "unit-34",
      "{%- for message in messages -%}{%- if message.content is string -%}{{ message.content }}{%-"
        " else -%}{%- for part in message.content -%}{%- if part.type == 'image' -%}<image>{%- elif "
        "part.type == 'text' -%}{{ part.text }}{%- endif -%}{%- endfor -%}{%- endif -%}{%- endfor -%"
        "}",
      NULL,
      0, "You are helpful.Hi thereHello!<image>What is this\077" },
    { "unit-36",
      "{{ 1e3 }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ 1e-5 }} {{ 123456789012345678.0 }} {{ 10 ** -1 }} {{"
        " 2 ** 0.5 }}",
      NULL,
      0, "1000.0 0.30000000000000004 0.3333333333333333 1e-05 1.2345678901234568e+17 0.1 1.4142135623"
        "730951" },
    { "unit-37",
      "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = [1, 2] %}{% set c, e = t %}{{ c + e }}",
      NULL,
      0, "123" },
    { "unit-38",
      "{% filter upper %}hello {{ n }}{% endfilter %}",
      NULL,
      0, "HELLO 7" },
    { "unit-39",
      "{{ xs|map('string')|join('-') }} {{ ['a','b']|map('upper')|list }}",
      NULL,
      0, "3-1-2 ['A', 'B']" },
    { "unit-40",
      "{% for x in xs %}{{ loop.cycle('odd', 'even') }}{% endfor %}",
      NULL,
      0, "oddevenodd" },
    { "unit-41",
      "{{ 'Abc' is lower }}{{ 'abc' is lower }}",
      NULL,
      0, "FalseTrue" },
    { "unit-42",
      "{{ messages | length > 2 }} {{ messages|last|attr_missing is defined }}",
      NULL,
      1, "No filter named 'attr_missing'." },
    { "unit-43",
      "{{ s | trim | length }} {{ -2 | abs }}",
      NULL,
      0, "11 2" },
    { "unit-44",
      "{% if messages[0].role == 'system' %}{% set sys = messages[0].content %}{% set rest = messa"
        "ges[1:] %}{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}[{{ sys }}]{{ res"
        "t|length }}",
      NULL,
      0, "[You are helpful.]3" },
    { "unit-45",
      "{{ bos_token }}{{ eos_token|length }}{{ add_generation_prompt }}",
      NULL,
      0, "<bos>5True" },
    { "unit-46",
      "{{ '\\u00e9\\x41\\t|' }}{{ 'a\\qb' }}",
      NULL,
      0, "\303\251A\t|a\\qb" },
    { "unit-47",
      "{{ '\303\244 b'|upper }}{{ '\303\204\303\226'|lower }}{{ '\320\277\321\200\320\270\320\262\320"
        "\265\321\202 \320\274\320\270\321\200'|title }}",
      NULL,
      0, "\303\204 B\303\244\303\266\320\237\321\200\320\270\320\262\320\265\321\202 \320\234\320\270"
        "\321\200" },
    { "unit-48",
      "{{ ' \343\200\200x\302\240 '|trim }}|{{ '\342\200\213x'|trim }}",
      NULL,
      0, "x|\342\200\213x" },
    { "unit-49",
      "{{ d|length }}{{ 'h\303\251llo'|length }}{{ 'h\303\251llo'[1] }}{{ 'h\303\251llo'[1:3] }}",
      NULL,
      0, "35\303\251\303\251l" },
    { "unit-50",
      "{% for a in [[1,2],[3,4]] %}{% for b in a %}{{ loop.index }}{{ b }}{% endfor %};{% endfor %"
        "}",
      NULL,
      0, "1122;1324;" },
    { "unit-51",
      "{{ [3,1,2]|sort|first }} {{ ['b','A','c']|sort }} {{ ['b','A','c']|sort(case_sensitive=true"
        ") }} {{ messages|map(attribute='role')|unique|list }}",
      NULL,
      0, "1 ['A', 'b', 'c'] ['A', 'b', 'c'] ['system', 'user', 'assistant']" },
    { "more-0",
      "  {%- raw -%}  {{ x }}  {%- endraw -%}  |",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "{{ x }}|" },
    { "more-1",
      "{% raw %}\n  a\n{% endraw %}\nb",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "\n  a\nb" },
    { "more-2",
      "x\n    {# comment #}\ny",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "x\ny" },
    { "more-3",
      "x   {# comment #}   y",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "x      y" },
    { "more-4",
      "{% for x in xs %}\n    {{ x }}\n{% endfor %}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "    1\n    2\n    3\n" },
    { "more-5",
      "{% for x in xs -%}\n    {{ x }}\n{%- endfor %}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "123" },
    { "more-6",
      "{%- macro a(x) -%}[{{ x }}]{%- endmacro -%}\n{%- macro b(y) -%}{{ a(y) }}{{ a(y ~ '!') }}{%"
        "- endmacro -%}\n{{ b('q') }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "[q][q!]" },
    { "more-7",
      "{{ x is not defined }} {{ s is not none }} {{ not s is none }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "True True True" },
    { "more-8",
      "{{ xs | map('string') | join(',') | upper | replace('1', 'one') }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "one,2,3" },
    { "more-9",
      "{{ 'a\\'b' }} {{ \"a\\\"b\" }} {{ 'tab\\there' }} {{ 'x' 'y' }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "a'b a\"b tab\there xy" },
    { "more-10",
      "{% if xs|length > 2 and s == 'x' or false %}yes{% endif %}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "yes" },
    { "more-11",
      "{{ 'abc'[1:] ~ 'abc'[:-1] ~ 'abc'[-2:] ~ 'abcdef'[1:5:2] ~ 'abcdef'[::2] ~ 'abc'[5:] }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "bcabbcbdace" },
    { "more-12",
      "{{ xs[1:2] }}{{ xs[-10:10] }}{{ xs[::-2] }}{{ xs[5:1:-1] }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "[2][1, 2, 3][3, 1][3]" },
    { "more-13",
      "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'assistant' %}{"
        "% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "True" },
    { "more-14",
      "{{ messages | selectattr('role', 'in', ['user', 'system']) | list | length }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "1" },
    { "more-15",
      "{{ messages | map(attribute='content') | join }}{{ messages|map(attribute='nope', default='"
        "D')|join }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "abDD" },
    { "more-16",
      "{% for m in messages %}{{ m.role|capitalize }}: {{ m['content'] }}\n"
        "{% endfor %}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "User: a\nAssistant: b\n" },
    { "more-17",
      "{% for i in range(3) %}{% for j in range(3) %}{% if j > i %}{% break %}{% endif %}{{ i }}{{"
        " j }} {% endfor %}{% endfor %}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "00 10 11 20 21 22 " },
    { "more-18",
      "{{ range(5)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "[0, 1, 2, 3, 4] [1, 4, 7] [5, 3, 1]" },
    { "more-19",
      "{{ 10 // 3 * 3 + 10 % 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ (1 + 2) * 3 }} {{ 1 + 2 * 3 }"
        "} {{ 'a' ~ 1 + 2 }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      1, "can only concatenate str (not \"int\") to str" },
    { "more-20",
      "{{ 3.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 100.0/3 }} {{ -0.5 }} {{ 5 / "
        "1 }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "3.0 1e+16 1000000000000000.0 0.0001 1e-05 33.333333333333336 -0.5 5.0" },
    { "more-21",
      "{{ xs|tojson(indent=2) }}|{{ {}|tojson }}|{{ []|tojson(indent=2) }}|{{ {'a': []}|tojson(ind"
        "ent=2) }}|{{ 'x\\u0001'|tojson }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "[\n  1,\n  2,\n  3\n]|{}|[]|{\n  \"a\": []\n}|\"x\\u0001\"" },
    { "more-22",
      "{{ {'a': 1, 'b': {'c': [1, 2]}}|tojson(separators=(',', ':')) }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "{\"a\":1,\"b\":{\"c\":[1,2]}}" },
    { "more-23",
      "{{ none|string }}{{ true|string }}{{ xs|string }}{{ ''|length }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "NoneTrue[1, 2, 3]0" },
    { "more-24",
      "{% set x = 'outer' %}{% macro m() %}{{ x }}{% endmacro %}{{ m() }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "outer" },
    { "more-25",
      "{% if true %}\n  yes\n{% endif %}\n",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "  yes\n" },
    { "more-26",
      "{{ s }}\n{{ s }}\n",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "x\nx" },
    { "more-27",
      "{%- if true %}\n\n  a\n{% endif -%}\n\nb",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "\n  a\nb" },
    { "more-28",
      "{{ 'A'|lower if s else 'B' }}{{ [1,2][0] if xs }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "a1" },
    { "more-29",
      "{{ xs|first is number }} {{ s|list|first }} {{ d is undefined }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "True x True" },
    { "more-30",
      "{{ ('user', 'assistant')[loop_index|default(0)] }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "user" },
    { "more-31",
      "{{ xs|sum(start=10) }} {{ [0.5, 1]|sum }} {{ ['a','b']|join }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "16 1.5 ab" },
    { "more-32",
      "{{ [{'n': 2}, {'n': 1}]|sort(attribute='n')|map(attribute='n')|list }} {{ [{'n': 2}, {'n': "
        "1}]|max(attribute='n') }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "[1, 2] {'n': 2}" },
    { "more-33",
      "{{ 'hello'|replace('l', '') }} {{ 'a b c'|replace(' ', '', 1) }} {{ 'ab'|replace('', '-') }"
        "}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "heo ab c -a-b-" },
    { "more-34",
      "{{ '%s-%d'|format('a', 3) if false else 'skip' }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "skip" },
    { "more-35",
      "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "37" },
    { "more-36",
      "{{ [1, 2] + [3] }} {{ [0] * 3 }} {{ 'x' in ['x'] }} {{ {'a': 1} == {'a': 1} }} {{ [1, 2] =="
        " [1, 2] }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "[1, 2, 3] [0, 0, 0] True True True" },
    { "more-37",
      "{{ 'Hello World'.split(' ')[1].lower().startswith('wor') }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "True" },
    { "more-38",
      "{{ messages[-1].content + '!' if messages else '' }}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"conte"
        "nt\": \"b\"}], \"xs\": [1, 2, 3], \"s\": \"x\"}",
      0, "b!" },
    { "more-40",
      "{% raw %}x\n   {% endraw %}|",
      "{}",
      0, "x\n|" },
    { "more-41",
      "a\n  {% raw %}b{% endraw %}",
      "{}",
      0, "a\nb" },
    { "more-42",
      "{% raw -%}\n  x  {%- endraw %}",
      "{}",
      0, "x" },
    { "more-43",
      "{% raw %}\n\n{% endraw %}\n\nz",
      "{}",
      0, "\n\n\nz" },
    { "chatml-tools",
      "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'sys"
        "tem' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n"
        "        {{- 'You are a helpful assistant.' }}\n    {%- endif %}\n"
        "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user que"
        "ry.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tool"
        "s>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n"
        "        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each functi"
        "on call, return a json object with function name and arguments within <tool_call></tool_cal"
        "l> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-"
        "object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == '"
        "system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' "
        "}}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end"
        "|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- set ns = namespace(multi_step_tool=true, las"
        "t_query_index=messages|length - 1) %}\n{%- for message in messages[::-1] %}\n"
        "    {%- set index = (messages|length - 1) - loop.index0 %}\n    {%- if ns.multi_step_tool a"
        "nd message.role == \"user\" and not(message.content.startswith('<tool_response>') and messa"
        "ge.content.endswith('</tool_response>')) %}\n        {%- set ns.multi_step_tool = false %}\n"
        "        {%- set ns.last_query_index = index %}\n    {%- endif %}\n"
        "{%- endfor %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (me"
        "ssage.role == \"system\" and not loop.first) %}\n        {{- '<|im_start|>' + message.role "
        "+ '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assista"
        "nt\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n"
        "            {{- '\\n' + message.content }}\n        {%- endif %}\n"
        "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function i"
        "s defined %}\n                {%- set tool_call = tool_call.function %}\n"
        "            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
        "            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n"
        "            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n"
        "        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\""
        " %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
        "            {{- '<|im_start|>user' }}\n        {%- endif %}\n"
        "        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n"
        "        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1"
        "].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n"
        "    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
        "    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n",
      "{\"messages\": [{\"role\": \"system\", \"content\": \"You are Tower.\"}, {\"role\": \"user\""
        ", \"content\": \"Weather in Lisboa\077\"}, {\"role\": \"assistant\", \"content\": \"\", \"t"
        "ool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"argument"
        "s\": {\"city\": \"Lisboa\", \"unit\": \"celsius\"}}}]}, {\"role\": \"tool\", \"content\": \""
        "{\\\"temp\\\": 21.5}\"}, {\"role\": \"tool\", \"content\": \"sunny\"}, {\"role\": \"assista"
        "nt\", \"content\": \"It is 21.5 \302\260C and sunny \342\200\224 enjoy!\"}, {\"role\": \"us"
        "er\", \"content\": \"Obrigado \360\237\231\217\"}], \"add_generation_prompt\": true, \"bos_"
        "token\": \"<s>\", \"eos_token\": \"</s>\", \"tools\": [{\"type\": \"function\", \"function\""
        ": {\"name\": \"get_weather\", \"description\": \"Get the weather for a city\", \"parameters"
        "\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\""
        ": \"City name, e.g. Lisboa\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"celsius\", \"f"
        "ahrenheit\"]}}, \"required\": [\"city\"]}}}]}",
      0, "<|im_start|>system\nYou are Tower.\n\n# Tools\n\nYou may call one or more functions to assi"
        "st with the user query.\n\nYou are provided with function signatures within <tools></tools>"
        " XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"d"
        "escription\": \"Get the weather for a city\", \"parameters\": {\"type\": \"object\", \"prop"
        "erties\": {\"city\": {\"type\": \"string\", \"description\": \"City name, e.g. Lisboa\"}, \""
        "unit\": {\"type\": \"string\", \"enum\": [\"celsius\", \"fahrenheit\"]}}, \"required\": [\""
        "city\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and"
        " arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
        "</tool_call><|im_end|>\n<|im_start|>user\nWeather in Lisboa\077<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \""
        "Lisboa\", \"unit\": \"celsius\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n"
        "<tool_response>\n{\"temp\": 21.5}\n</tool_response>\n<tool_response>\n"
        "sunny\n</tool_response><|im_end|>\n<|im_start|>assistant\nIt is 21.5 \302\260C and sunny \342"
        "\200\224 enjoy!<|im_end|>\n<|im_start|>user\nObrigado \360\237\231\217<|im_end|>\n"
        "<|im_start|>assistant\n" },
    { "chatml-notools",
      "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'sys"
        "tem' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n"
        "        {{- 'You are a helpful assistant.' }}\n    {%- endif %}\n"
        "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user que"
        "ry.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tool"
        "s>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n"
        "        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each functi"
        "on call, return a json object with function name and arguments within <tool_call></tool_cal"
        "l> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-"
        "object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == '"
        "system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' "
        "}}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end"
        "|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- set ns = namespace(multi_step_tool=true, las"
        "t_query_index=messages|length - 1) %}\n{%- for message in messages[::-1] %}\n"
        "    {%- set index = (messages|length - 1) - loop.index0 %}\n    {%- if ns.multi_step_tool a"
        "nd message.role == \"user\" and not(message.content.startswith('<tool_response>') and messa"
        "ge.content.endswith('</tool_response>')) %}\n        {%- set ns.multi_step_tool = false %}\n"
        "        {%- set ns.last_query_index = index %}\n    {%- endif %}\n"
        "{%- endfor %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (me"
        "ssage.role == \"system\" and not loop.first) %}\n        {{- '<|im_start|>' + message.role "
        "+ '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assista"
        "nt\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n"
        "            {{- '\\n' + message.content }}\n        {%- endif %}\n"
        "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function i"
        "s defined %}\n                {%- set tool_call = tool_call.function %}\n"
        "            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
        "            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n"
        "            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n"
        "        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\""
        " %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
        "            {{- '<|im_start|>user' }}\n        {%- endif %}\n"
        "        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n"
        "        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1"
        "].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n"
        "    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
        "    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n",
      "{\"messages\": [{\"role\": \"system\", \"content\": \"  Be brief.  \"}, {\"role\": \"user\""
        ", \"content\": \"Ol\303\241, \\\"mundo\\\"!\\n\"}, {\"role\": \"assistant\", \"content\": \""
        "Ol\303\241!\"}, {\"role\": \"user\", \"content\": \"Traduz: good night\"}], \"add_generatio"
        "n_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
      0, "<|im_start|>system\n  Be brief.  <|im_end|>\n<|im_start|>user\n"
        "Ol\303\241, \"mundo\"!\n<|im_end|>\n<|im_start|>assistant\nOl\303\241!<|im_end|>\n"
        "<|im_start|>user\nTraduz: good night<|im_end|>\n<|im_start|>assistant\n"
        "" },
    { "chatml-nosys",
      "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'sys"
        "tem' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n"
        "        {{- 'You are a helpful assistant.' }}\n    {%- endif %}\n"
        "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user que"
        "ry.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tool"
        "s>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n"
        "        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each functi"
        "on call, return a json object with function name and arguments within <tool_call></tool_cal"
        "l> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-"
        "object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == '"
        "system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' "
        "}}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end"
        "|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- set ns = namespace(multi_step_tool=true, las"
        "t_query_index=messages|length - 1) %}\n{%- for message in messages[::-1] %}\n"
        "    {%- set index = (messages|length - 1) - loop.index0 %}\n    {%- if ns.multi_step_tool a"
        "nd message.role == \"user\" and not(message.content.startswith('<tool_response>') and messa"
        "ge.content.endswith('</tool_response>')) %}\n        {%- set ns.multi_step_tool = false %}\n"
        "        {%- set ns.last_query_index = index %}\n    {%- endif %}\n"
        "{%- endfor %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (me"
        "ssage.role == \"system\" and not loop.first) %}\n        {{- '<|im_start|>' + message.role "
        "+ '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assista"
        "nt\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n"
        "            {{- '\\n' + message.content }}\n        {%- endif %}\n"
        "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function i"
        "s defined %}\n                {%- set tool_call = tool_call.function %}\n"
        "            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
        "            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n"
        "            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n"
        "        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\""
        " %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
        "            {{- '<|im_start|>user' }}\n        {%- endif %}\n"
        "        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n"
        "        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1"
        "].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n"
        "    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
        "    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"Ol\303\241, \\\"mundo\\\"!\\n\"}, {\"ro"
        "le\": \"assistant\", \"content\": \"Ol\303\241!\"}, {\"role\": \"user\", \"content\": \"Tra"
        "duz: good night\"}], \"add_generation_prompt\": false, \"bos_token\": \"<s>\", \"eos_token\""
        ": \"</s>\"}",
      0, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Ol\303\241, \"mundo\"!\n<|im_end|>\n<|im_start|>assistant\nOl\303\241!<|im_end|>\n"
        "<|im_start|>user\nTraduz: good night<|im_end|>\n" },
    { "llama3-tools",
      "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n"
        "{%- endif %}\n{%- if not tools_in_user_message is defined %}\n"
        "    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is define"
        "d %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}\n"
        "{%- if not tools is defined %}\n    {%- set tools = none %}\n"
        "{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the righ"
        "t place. #}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messag"
        "es[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n"
        "{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n"
        "\n{#- System message + builtin tools #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\"
        "n\\n\" }}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
        "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{%- if tools is not none and not tools_"
        "in_user_message %}\n    {{- \"You have access to the following functions.\\n\\n\" }}\n"
        "{%- endif %}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n\n"
        "{#- Custom tools are passed in a user message with some extra guidance #}\n"
        "{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user messa"
        "ge so we can plug it in here #}\n    {%- if messages | length != 0 %}\n"
        "        {%- set first_user_message = messages[0]['content']|trim %}\n"
        "        {%- set messages = messages[1:] %}\n    {%- else %}\n"
        "        {{- raise_exception(\"Cannot put tools in the first user message when there's no fi"
        "rst user message!\") }}\n{%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>\\n"
        "\\n' -}}\n    {{- \"Given the following functions, please respond with a JSON for a functio"
        "n call \" }}\n    {{- \"with its proper arguments that best answers the given prompt.\\n\\n"
        "\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n"
        "        {{- \"\\n\\n\" }}\n    {%- endfor %}\n    {{- first_user_message + \"<|eot_id|>\"}}"
        "\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == 'ipython'"
        " or message.role == 'tool' or 'tool_calls' in message) %}\n        {{- '<|start_header_id|>"
        "' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }"
        "}\n    {%- elif 'tool_calls' in message %}\n        {%- if not message.tool_calls|length =="
        " 1 %}\n            {{- raise_exception(\"This model only supports single tool-calls at once"
        "!\") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %"
        "}\n        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
        "        {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n        {{- '\"parameters\": ' }}"
        "\n        {{- tool_call.arguments | tojson }}\n        {{- \"}\" }}\n"
        "        {{- \"<|eot_id|>\" }}\n    {%- elif message.role == \"tool\" or message.role == \"i"
        "python\" %}\n        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n"
        "        {%- if message.content is mapping or message.content is iterable %}\n"
        "            {{- message.content | tojson }}\n        {%- else %}\n"
        "            {{- message.content }}\n        {%- endif %}\n        {{- \"<|eot_id|>\" }}\n"
        "    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
        "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
        "{%- endif %}\n",
      "{\"messages\": [{\"role\": \"system\", \"content\": \"You are Tower.\"}, {\"role\": \"user\""
        ", \"content\": \"Weather in Lisboa\077\"}, {\"role\": \"assistant\", \"content\": \"\", \"t"
        "ool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"argument"
        "s\": {\"city\": \"Lisboa\"}}}]}, {\"role\": \"tool\", \"content\": {\"temp\": 21.5}}], \"ad"
        "d_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"tools\": [{"
        "\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get th"
        "e weather for a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {"
        "\"type\": \"string\", \"description\": \"City name, e.g. Lisboa\"}, \"unit\": {\"type\": \""
        "string\", \"enum\": [\"celsius\", \"fahrenheit\"]}}, \"required\": [\"city\"]}}}]}",
      0, "<s><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\nYou are Tower.<|eot_id|><|start_header_id|>user<|end_header_id|>"
        "\n\nGiven the following functions, please respond with a JSON for a function call with its "
        "proper arguments that best answers the given prompt.\n\n{\n    \"type\": \"function\",\n"
        "    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": \"Get the"
        " weather for a city\",\n        \"parameters\": {\n            \"type\": \"object\",\n"
        "            \"properties\": {\n                \"city\": {\n                    \"type\": \""
        "string\",\n                    \"description\": \"City name, e.g. Lisboa\"\n"
        "                },\n                \"unit\": {\n                    \"type\": \"string\",\n"
        "                    \"enum\": [\n                        \"celsius\",\n"
        "                        \"fahrenheit\"\n                    ]\n"
        "                }\n            },\n            \"required\": [\n"
        "                \"city\"\n            ]\n        }\n    }\n}\n"
        "\nWeather in Lisboa\077<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
        "\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lisboa\"}}<|eot_id|><|start_head"
        "er_id|>ipython<|end_header_id|>\n\n{\"temp\": 21.5}<|eot_id|><|start_header_id|>assistant<|"
        "end_header_id|>\n\n" },
    { "llama3-plain",
      "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n"
        "{%- endif %}\n{%- if not tools_in_user_message is defined %}\n"
        "    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is define"
        "d %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}\n"
        "{%- if not tools is defined %}\n    {%- set tools = none %}\n"
        "{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the righ"
        "t place. #}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messag"
        "es[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n"
        "{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n"
        "\n{#- System message + builtin tools #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\"
        "n\\n\" }}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
        "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{%- if tools is not none and not tools_"
        "in_user_message %}\n    {{- \"You have access to the following functions.\\n\\n\" }}\n"
        "{%- endif %}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n\n"
        "{#- Custom tools are passed in a user message with some extra guidance #}\n"
        "{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user messa"
        "ge so we can plug it in here #}\n    {%- if messages | length != 0 %}\n"
        "        {%- set first_user_message = messages[0]['content']|trim %}\n"
        "        {%- set messages = messages[1:] %}\n    {%- else %}\n"
        "        {{- raise_exception(\"Cannot put tools in the first user message when there's no fi"
        "rst user message!\") }}\n{%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>\\n"
        "\\n' -}}\n    {{- \"Given the following functions, please respond with a JSON for a functio"
        "n call \" }}\n    {{- \"with its proper arguments that best answers the given prompt.\\n\\n"
        "\" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n"
        "        {{- \"\\n\\n\" }}\n    {%- endfor %}\n    {{- first_user_message + \"<|eot_id|>\"}}"
        "\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == 'ipython'"
        " or message.role == 'tool' or 'tool_calls' in message) %}\n        {{- '<|start_header_id|>"
        "' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }"
        "}\n    {%- elif 'tool_calls' in message %}\n        {%- if not message.tool_calls|length =="
        " 1 %}\n            {{- raise_exception(\"This model only supports single tool-calls at once"
        "!\") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %"
        "}\n        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
        "        {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n        {{- '\"parameters\": ' }}"
        "\n        {{- tool_call.arguments | tojson }}\n        {{- \"}\" }}\n"
        "        {{- \"<|eot_id|>\" }}\n    {%- elif message.role == \"tool\" or message.role == \"i"
        "python\" %}\n        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n"
        "        {%- if message.content is mapping or message.content is iterable %}\n"
        "            {{- message.content | tojson }}\n        {%- else %}\n"
        "            {{- message.content }}\n        {%- endif %}\n        {{- \"<|eot_id|>\" }}\n"
        "    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
        "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
        "{%- endif %}\n",
      "{\"messages\": [{\"role\": \"system\", \"content\": \"  Be brief.  \"}, {\"role\": \"user\""
        ", \"content\": \"Ol\303\241, \\\"mundo\\\"!\\n\"}, {\"role\": \"assistant\", \"content\": \""
        "Ol\303\241!\"}, {\"role\": \"user\", \"content\": \"Traduz: good night\"}], \"add_generatio"
        "n_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
      0, "<s><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
        "\nOl\303\241, \"mundo\"!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
        "\nOl\303\241!<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
        "\nTraduz: good night<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
        "\n" },
    { "mistral",
      "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['conten"
        "t'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n"
        "    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n"
        "{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0"
        " % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation"
        " roles must alternate user/assistant/user/assistant/...') }}\n"
        "    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and sy"
        "stem_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + messag"
        "e['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['co"
        "ntent'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' "
        "%}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n"
        "        {{- raise_exception('Only user and assistant roles are supported, with the exceptio"
        "n of an initial optional system message!') }}\n    {%- endif %}\n"
        "{%- endfor %}\n",
      "{\"messages\": [{\"role\": \"system\", \"content\": \"  Be brief.  \"}, {\"role\": \"user\""
        ", \"content\": \"Ol\303\241, \\\"mundo\\\"!\\n\"}, {\"role\": \"assistant\", \"content\": \""
        "Ol\303\241!\"}, {\"role\": \"user\", \"content\": \"Traduz: good night\"}], \"add_generatio"
        "n_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
      0, "<s> [INST]   Be brief.  \n\nOl\303\241, \"mundo\"!\n [/INST] Ol\303\241!</s> [INST] Traduz:"
        " good night [/INST]" },
    { "mistral-bad-roles",
      "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['conten"
        "t'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n"
        "    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n"
        "{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0"
        " % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation"
        " roles must alternate user/assistant/user/assistant/...') }}\n"
        "    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and sy"
        "stem_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + messag"
        "e['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['co"
        "ntent'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' "
        "%}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n"
        "        {{- raise_exception('Only user and assistant roles are supported, with the exceptio"
        "n of an initial optional system message!') }}\n    {%- endif %}\n"
        "{%- endfor %}\n",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"Ol\303\241, \\\"mundo\\\"!\\n\"}, {\"ro"
        "le\": \"user\", \"content\": \"Ol\303\241, \\\"mundo\\\"!\\n\"}], \"add_generation_prompt\""
        ": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
      1, "After the optional system message, conversation roles must alternate user/assistant/user/as"
        "sistant/..." },
    { "plain-trim-lstrip",
      "{{ bos_token }}\n{% for message in messages %}\n    {% if message['role'] == 'system' %}\n"
        "<<SYS>>\n{{ message['content'] }}\n<</SYS>>\n    {% elif message['role'] == 'user' %}\n"
        "[INST] {{ message['content'] | trim }} [/INST]\n    {% else %}\n"
        "{{ message['content'] }}{{ eos_token }}\n    {% endif %}\n{% endfor %}\n"
        "{% if add_generation_prompt %}\nAssistant:\n{% endif %}\n",
      "{\"messages\": [{\"role\": \"system\", \"content\": \"  Be brief.  \"}, {\"role\": \"user\""
        ", \"content\": \"Ol\303\241, \\\"mundo\\\"!\\n\"}, {\"role\": \"assistant\", \"content\": \""
        "Ol\303\241!\"}, {\"role\": \"user\", \"content\": \"Traduz: good night\"}], \"add_generatio"
        "n_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
      0, "<s>\n<<SYS>>\n  Be brief.  \n<</SYS>>\n[INST] Ol\303\241, \"mundo\"! [/INST]\n"
        "Ol\303\241!</s>\n[INST] Traduz: good night [/INST]\nAssistant:\n"
        "" },
};
/* ---- end of generated table ---- */

static char *render_src(const char *src, const char *ctx_json, tw_status *st, size_t *len) {
    tw_template *t = NULL;
    char *out = NULL;
    *st = tw_template_new(src, strlen(src), &t);
    if (*st != TW_OK) return NULL;
    json_error_t e;
    json_t *ctx = ctx_json ? json_loads(ctx_json, JSON_ALLOW_NUL, &e) : json_object();
    if (!ctx) { *st = TW_E_ARG; tw_template_free(t); return NULL; }
    *st = tw_template_render_json(t, ctx, &out, len);
    json_decref(ctx);
    tw_template_free(t);
    return out;
}

static void test_table(void) {
    for (size_t i = 0; i < sizeof JJ_CASES / sizeof JJ_CASES[0]; i++) {
        const jj_case *c = &JJ_CASES[i];
        tw_status st;
        size_t len = 0;
        char *out = render_src(c->source, c->context ? c->context : CTX_UNIT, &st, &len);
        if (c->is_error) {
            CHECK(st == TW_E_TEMPLATE, "%s: expected TW_E_TEMPLATE, got %s", c->name, tw_status_name(st));
        } else {
            CHECK(st == TW_OK, "%s: %s", c->name, tw_last_error());
            CHECK(out && len == strlen(c->expected) && memcmp(out, c->expected, len) == 0,
                  "%s:\n  got      [%s]\n  expected [%s]", c->name, out ? out : "(null)", c->expected);
        }
        free(out);
    }
}

/* Every case of a chat_cases*.jsonl file, rendered with the given template. */
static void test_fixture(const char *tmpl_rel, const char *cases_rel) {
    char *src = NULL;
    size_t n = 0;
    CHECK_OK(tw_read_file(th_path(tmpl_rel), &src, &n), tmpl_rel);
    if (!src) return;
    tw_template *t = NULL;
    CHECK_OK(tw_template_new(src, n, &t), tmpl_rel);
    free(src);
    if (!t) return;
    FILE *f = fopen(th_path(cases_rel), "rb");
    CHECK(f != NULL, "cannot open %s", th_path(cases_rel));
    int count = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while (f && (got = getline(&line, &cap, f)) > 0) {
        json_error_t e;
        json_t *c = json_loadb(line, (size_t)got, JSON_ALLOW_NUL, &e);
        CHECK(c != NULL, "%s: bad JSON line: %s", cases_rel, e.text);
        if (!c) continue;
        const char *id = json_string_value(json_object_get(c, "id"));
        json_t *ctx = json_pack("{sO sO ss ss}", "messages", json_object_get(c, "messages"),
                                "add_generation_prompt", json_object_get(c, "add_generation_prompt"),
                                "bos_token", "<bos>", "eos_token", "<eos>");
        char *out = NULL;
        size_t len = 0;
        tw_status st = tw_template_render_json(t, ctx, &out, &len);
        json_t *prompt = json_object_get(c, "prompt"), *err = json_object_get(c, "error");
        if (prompt) {
            CHECK(st == TW_OK, "%s: %s", id, tw_last_error());
            CHECK(out && len == json_string_length(prompt) && memcmp(out, json_string_value(prompt), len) == 0,
                  "%s: prompt differs:\n  got      [%s]\n  expected [%s]", id, out ? out : "", json_string_value(prompt));
        } else {
            CHECK(st == TW_E_TEMPLATE, "%s: expected TW_E_TEMPLATE, got %s", id, tw_status_name(st));
            CHECK(strcmp(tw_last_error(), json_string_value(err)) == 0, "%s: message [%s], expected [%s]", id,
                  tw_last_error(), json_string_value(err));
        }
        free(out);
        json_decref(ctx);
        json_decref(c);
        count++;
    }
    free(line);
    if (f) fclose(f);
    CHECK(count > 10, "%s: only %d cases", cases_rel, count);
    tw_template_free(t);
}

/* The public entry point builds {messages, add_generation_prompt, bos_token, eos_token}. */
static void test_public_api(void) {
    const char *src = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}{% endfor %}"
                      "{% if add_generation_prompt %}<model>{% endif %}{{ eos_token }}";
    tw_template *t = NULL;
    CHECK_OK(tw_template_new(src, strlen(src), &t), "compile");
    tw_message msgs[] = { { "user", "  <image>\nDescreve a imagem. " }, { "assistant", "Um gato 🐈" } };
    char *out = NULL;
    CHECK_OK(tw_template_render(t, msgs, 2, 1, "<bos>", "<eos>", &out), "render");
    CHECK(out && strcmp(out, "<bos><user><image>\nDescreve a imagem.<assistant>Um gato 🐈<model><eos>") == 0, "got [%s]", out);
    free(out);
    out = NULL;
    CHECK_OK(tw_template_render(t, NULL, 0, 0, NULL, NULL, &out), "render empty");
    CHECK(out && strcmp(out, "") == 0, "got [%s]", out);
    free(out);
    tw_template_free(t);
    tw_template_free(NULL);
    CHECK(tw_template_new(NULL, 3, &t) == TW_E_ARG, "NULL source");
}

static void expect_syntax_error(const char *src, const char *want) {
    tw_template *t = NULL;
    tw_status st = tw_template_new(src, strlen(src), &t);
    CHECK(st == TW_E_TEMPLATE && t == NULL, "[%s] should not compile", src);
    CHECK(strstr(tw_last_error(), want) != NULL, "[%s]: message [%s] lacks [%s]", src, tw_last_error(), want);
    tw_template_free(t);
}

static void test_syntax_errors(void) {
    expect_syntax_error("Hello {{ name", "chat template:1:14: unexpected end of template, expected '}}'");
    expect_syntax_error("line1\n{% if x %}\n  {{ x + }}\n{% endif %}", "chat template:3:10: expected an expression, got '}}'");
    expect_syntax_error("{% for m in messages %}{{ m }}", "expected '{% endfor %}', got end of template");
    expect_syntax_error("{% if a %}x{% else %}y", "expected '{% endif %}'");
    expect_syntax_error("{% frobnicate %}", "chat template:1:4: unknown tag 'frobnicate'");
    expect_syntax_error("{{ 'unterminated }}", "chat template:1:4: unterminated string literal");
    expect_syntax_error("{# never closed", "unterminated comment");
    expect_syntax_error("{{ a b }}", "chat template:1:6: expected '}}', got 'b'");
    expect_syntax_error("{% set %}", "expected a variable name");
    expect_syntax_error("{{ f(1, }}", "unexpected end of template");
    expect_syntax_error("{{ x | }}", "expected a filter name");
    expect_syntax_error("{% for in x %}{% endfor %}", "expected 'in', got 'x'");
    expect_syntax_error("{{ 1 $ 2 }}", "unexpected character '$'");
    expect_syntax_error("{% raw %}never ends", "missing {% endraw %}");
}

static void expect_render_error(const char *src, const char *want) {
    tw_status st;
    size_t len;
    char *out = render_src(src, NULL, &st, &len);
    CHECK(st == TW_E_TEMPLATE && !out, "[%.60s] should fail, got %s", src, tw_status_name(st));
    CHECK(strstr(tw_last_error(), want) != NULL, "[%.60s]: message [%s] lacks [%s]", src, tw_last_error(), want);
    free(out);
}

static void expect_render(const char *src, const char *ctx, const char *want) {
    tw_status st;
    size_t len = 0;
    char *out = render_src(src, ctx, &st, &len);
    CHECK(st == TW_OK, "[%s]: %s", src, tw_last_error());
    CHECK(out && strcmp(out, want) == 0, "[%s]: got [%s] expected [%s]", src, out ? out : "", want);
    free(out);
}

/* Hostile templates end with an error, quickly, and never crash. */
static void test_guards(void) {
    expect_render_error("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(10) %}{% endfor %}{% endfor %}{% endfor %}",
                        "loop iterations");
    expect_render_error("{% set s = 'x' * 1000000 %}{% for i in range(100) %}{{ s }}{% endfor %}", "output exceeds");
    expect_render_error("{{ 'abc' * 1000000000000 }}", "repetition too large");
    expect_render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested too deeply");
    expect_render_error("{{ range(100000000) | length }}", "range() too large");
    expect_render_error("{{ 2 ** 200 }}", "integer overflow");
    expect_render_error("{{ 1 // 0 }}", "division or modulo by zero");
    expect_render_error("{{ 'a' < 1 }}", "not supported");
    expect_render_error("{{ nosuchfunction() }}", "'nosuchfunction' is undefined");
    expect_render_error("{{ x | nosuchfilter }}", "no filter named 'nosuchfilter'");
    expect_render_error("{{ x is nosuchtest }}", "no test named 'nosuchtest'");
    expect_render_error("{% set d = {} %}{% set d.x = 1 %}", "non-namespace");
    expect_render_error("{{ undefined_thing + 1 }}", "'undefined_thing' is undefined");
    expect_render_error("{{ raise_exception('custom message') }}", "custom message");
    CHECK(strcmp(tw_last_error(), "custom message") == 0, "raise_exception message is kept as is: [%s]", tw_last_error());

    /* deep nesting is a syntax error, not a stack overflow */
    size_t n = 100000;
    char *deep = malloc(2 * n + 16);
    if (!deep) return;
    n = 20000;
    strcpy(deep, "{{ ");
    memset(deep + 3, '(', n);
    deep[3 + n] = '1';
    memset(deep + 4 + n, ')', n);
    strcpy(deep + 4 + 2 * n, " }}");
    tw_template *t = NULL;
    CHECK(tw_template_new(deep, strlen(deep), &t) == TW_E_TEMPLATE, "deep parentheses");
    CHECK(strstr(tw_last_error(), "nested too deeply") != NULL, "message: %s", tw_last_error());
    memset(deep, 0, 2 * n + 16);
    for (size_t i = 0; i < n; i++) deep[i] = '-';
    memcpy(deep + n, "1", 2);
    char *src = tw_asprintf("{{ %s }}", deep);
    CHECK(tw_template_new(src, strlen(src), &t) == TW_E_TEMPLATE, "deep unary minus");
    free(src);
    for (size_t i = 0; i < 5000; i++) memcpy(deep + 10 * i, "{% if 1 %}", 10);
    deep[50000] = 0;
    CHECK(tw_template_new(deep, strlen(deep), &t) == TW_E_TEMPLATE, "deep blocks");
    free(deep);

    /* binary junk must not crash the lexer */
    char junk[512];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)("{%}#-+'\"\\x(\n"[i % 13] ^ (i % 7 == 3 ? 0x80 : 0));
    if (tw_template_new(junk, sizeof junk, &t) == TW_OK) tw_template_free(t);
    CHECK(1, "junk");
}

/* Behaviour chosen on purpose where we are more lenient than jinja2 (documented). */
static void test_lenient(void) {
    expect_render("[{{ foo.bar }}][{{ foo.bar.baz is defined }}][{{ messages[0].role }}]", "{\"messages\": []}", "[][False][]");
    expect_render("a\r\nb\rc\n", NULL, "a\nb\nc");                 /* newlines normalised, last dropped */
    expect_render("{{ x }}", "{\"x\": \"nul\\u0000inside\"}", "nul");  /* strcmp view; length checked below */
    tw_status st;
    size_t len = 0;
    char *out = render_src("{{ x }}|{{ x|length }}", "{\"x\": \"a\\u0000b\"}", &st, &len);
    CHECK(st == TW_OK && len == 5 && memcmp(out, "a\0b|3", 5) == 0, "U+0000 kept: len %zu", len);
    free(out);
    expect_render("{{ strftime_now('%Y') | length }}", NULL, "4");
    expect_render("{% generation %}kept{% endgeneration %}", NULL, "kept");
    expect_render("{{ '{{' }}{{ {'a': {'b': 1}}['a']['b'] }}", NULL, "{{1");
}

int main(void) {
    test_fixture("tokenizer/chat_template.gemma2.jinja", "tokenizer/chat_cases.jsonl");
    test_fixture("tiny-towervision/chat_template.jinja", "tokenizer/chat_cases_towervision.jsonl");
    test_public_api();
    test_table();
    test_syntax_errors();
    test_guards();
    test_lenient();
    return th_report();
}
