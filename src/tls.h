/* SPDX-License-Identifier: MIT */
/* tls.h - HTTPS for the main listener: the certificate and key (re-read on
 * SIGHUP without a restart), and mutual TLS against a CA bundle.
 *
 *	struct tls *t;
 *	tls_new(&t, cfg->tls_cert_file, cfg->tls_key_file, cfg->tls_ca_file, err);
 *	http_start(..., t, ...);        // the listener speaks TLS through t
 *	tls_reload(t, err);              // a bad new pair keeps the old one
 *	tls_free(t);                     // after the listener stops
 *
 * libmicrohttpd asks for the certificate at each handshake through a
 * gnutls callback, which reads the pair in force; pairs replaced by a
 * reload are kept until tls_free, since a handshake may still use them.
 * With a CA, a client without a certificate it signed fails the handshake.
 */
#ifndef ATROUSD_TLS_H
#define ATROUSD_TLS_H

#include <stddef.h>

struct tls;

/* Load and check the pair (and the CA bundle, when ca is not empty). */
int tls_new(struct tls **out, const char *cert, const char *key, const char *ca, char *err);

/* Re-read the certificate and key files; on failure the pair in force stays
 * and err says why. */
int tls_reload(struct tls *t, char *err);

/* The CA bundle's PEM text (NUL-terminated), or NULL without mutual TLS. */
const char *tls_ca_pem(const struct tls *t);

/* The certificate callback to hand libmicrohttpd (a gnutls
 * gnutls_certificate_retrieve_function2). */
void *tls_cert_callback(void);

/* Free the credentials; NULL is allowed. */
void tls_free(struct tls *t);

#endif
