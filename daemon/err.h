/* The daemon's one error convention: a negative errno and a text that names
 * the thing and says what to do. Functions that can fail in ways a user
 * must understand take an `err *` and return err_set(...)'s value, so the
 * code and its explanation travel together up to the reply or the log. */
#ifndef MCEFAD_ERR_H
#define MCEFAD_ERR_H

#define ERR_TEXT_MAX 480

typedef struct err {
    int code; /* 0 or a negative errno */
    char text[ERR_TEXT_MAX];
} err;

/* Sets e (which may be NULL) and returns code. */
int err_set(err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Puts context in front of the text already in e: "context: text".
 * Returns e->code. */
int err_prefix(err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
