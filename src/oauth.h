/* oauth.h - OAuth2 client-credentials tokens, fetched through the engine's
 * curl multi handle and shared by every endpoint with the same token URL,
 * client id and scope.
 *
 * A token is used until shortly before it expires (min(60 s, lifetime/10)
 * before); the first user after that point starts a refresh and keeps using
 * the old token meanwhile. Users that find no valid token wait: they are
 * called back from the loop when the token request completes. A failed
 * token request fails its waiters, and further requests back off (1 s,
 * doubling, up to 5 min), failing at once meanwhile.
 */
#pragma once

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/time.h"

struct endpoint_ext;
struct http;
struct secrets;
struct oauth_token;

struct oauth_waiter {
    struct oauth_waiter *next;
    struct oauth_token *tok; /* waited for, or NULL */
    /* token: the new access token, or NULL and err says why */
    void (*cb)(struct oauth_waiter *w, const char *token, const char *err);
};

struct oauth {
    struct http *http;       /* borrowed */
    struct secrets *secrets; /* borrowed */
    const char *user_agent;  /* borrowed */
    struct oauth_token *list;
};

void oauth_init(struct oauth *o, struct http *http, struct secrets *secrets,
                const char *user_agent);
/* The token for x's auth (the token request uses x's tls and proxy
 * options). 0 and *token (valid until the next oauth call), -EAGAIN when w
 * now waits (w->cb runs later), or -errno with a reason in err. */
int oauth_get(struct oauth *o, const struct endpoint_ext *x, usec_t now, struct oauth_waiter *w,
              const char **token, char *err, size_t errlen);
/* The server refused the token: forget it (token NULL: whatever is cached),
 * so the next oauth_get fetches a new one. */
void oauth_invalidate(struct oauth *o, const struct endpoint_ext *x, const char *token);
/* Takes w off the list it waits on (no callback). */
void oauth_cancel(struct oauth *o, struct oauth_waiter *w);
/* A transfer finished: true if it was a token request (handled). */
bool oauth_xfer_done(struct oauth *o, CURL *easy, CURLcode res);
/* Frees everything; in-flight token requests are removed from the multi. */
void oauth_done(struct oauth *o);
