/* hex.c - lower-case hex encoding, used for node ids and keys in text. */
#include "base.h"

void nx_hex_encode(char *out, const uint8_t *in, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int nx_hex_decode(uint8_t *out, size_t out_len, const char *hex)
{
    for (size_t i = 0; i < out_len; i++) {
        int hi = hex_value(hex[2 * i]);
        if (hi < 0)
            return NX_ERR_INVAL;
        int lo = hex_value(hex[2 * i + 1]);
        if (lo < 0)
            return NX_ERR_INVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * out_len] == '\0' ? NX_OK : NX_ERR_INVAL;
}
