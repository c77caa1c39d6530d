/*
 * codec.c - the canonical encoder/decoder behind every ledger layout (see
 * codec.h and docs/ledger.md "Encoding").
 */
#include "ledger/codec.h"

#include <stdlib.h>
#include <string.h>

#include "ledger/ledger.h"

void codec_enc_init(struct codec *c)
{
    memset(c, 0, sizeof *c);
}

void codec_dec_init(struct codec *c, const uint8_t *buf, size_t len)
{
    memset(c, 0, sizeof *c);
    c->decode = true;
    c->buf = (uint8_t *)buf;
    c->len = len;
}

bool codec_done(const struct codec *c)
{
    return !c->err && (!c->decode || c->off == c->len);
}

void codec_free(struct codec *c)
{
    if (!c->decode)
        free(c->buf);
    c->buf = NULL;
}

static uint8_t *take(struct codec *c, size_t n)
{
    if (c->err)
        return NULL;
    if (c->decode) {
        if (c->len - c->off < n) {
            c->err = true;
            return NULL;
        }
        uint8_t *p = c->buf + c->off;
        c->off += n;
        return p;
    }
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        while (cap < c->len + n)
            cap *= 2;
        uint8_t *nb = realloc(c->buf, cap);
        if (!nb) {
            c->err = true;
            return NULL;
        }
        c->buf = nb;
        c->cap = cap;
    }
    uint8_t *p = c->buf + c->len;
    c->len += n;
    return p;
}

void f_u8(struct codec *c, uint8_t *v)
{
    uint8_t *p = take(c, 1);
    if (!p)
        return;
    if (c->decode)
        *v = p[0];
    else
        p[0] = *v;
}

void f_u32(struct codec *c, uint32_t *v)
{
    uint8_t *p = take(c, 4);
    if (!p)
        return;
    if (c->decode) {
        *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    } else {
        for (int i = 0; i < 4; i++)
            p[i] = (uint8_t)(*v >> (8 * i));
    }
}

void f_u64(struct codec *c, uint64_t *v)
{
    uint8_t *p = take(c, 8);
    if (!p)
        return;
    if (c->decode)
        *v = le64_get(p);
    else
        le64_put(p, *v);
}

void f_fixed(struct codec *c, uint8_t *v, size_t n)
{
    uint8_t *p = take(c, n);
    if (!p)
        return;
    if (c->decode)
        memcpy(v, p, n);
    else
        memcpy(p, v, n);
}

bool ledger_name_ok(const char *s)
{
    size_t n = strnlen(s, LEDGER_STR_CAP);
    if (n == 0 || n > LEDGER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-'))
            return false;
    }
    return true;
}

static bool name_allowed(const char *s, int flags)
{
    if (s[0] == '\0')
        return flags & NAME_EMPTY_OK;
    if (strcmp(s, "*") == 0)
        return flags & NAME_STAR_OK;
    return ledger_name_ok(s);
}

void f_name(struct codec *c, char *s, int flags)
{
    uint8_t n = 0;
    if (!c->decode) {
        if (!name_allowed(s, flags)) {
            c->err = true;
            return;
        }
        n = (uint8_t)strlen(s);
    }
    f_u8(c, &n);
    if (c->err)
        return;
    if (c->decode) {
        if (n > LEDGER_NAME_MAX) {
            c->err = true;
            return;
        }
        f_fixed(c, (uint8_t *)s, n);
        if (c->err)
            return;
        s[n] = '\0';
        if (strlen(s) != n || !name_allowed(s, flags))
            c->err = true;
    } else {
        f_fixed(c, (uint8_t *)s, n);
    }
}

void f_blob(struct codec *c, uint8_t *p, size_t *len, size_t cap)
{
    uint32_t n = (uint32_t)*len;
    f_u32(c, &n);
    if (c->err)
        return;
    if (n > cap) {
        c->err = true;
        return;
    }
    f_fixed(c, p, n);
    *len = n;
}
