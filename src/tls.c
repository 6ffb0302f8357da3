/* SPDX-License-Identifier: MIT */
/* tls.c - the certificate pair in force, swapped under a lock on reload;
 * the gnutls callback libmicrohttpd calls at each handshake. */
#include "autoconfig.h"

#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tls.h"

/* Longest certificate chain accepted. */
#define TLS_MAX_CHAIN 16

/* One certificate chain with its key. */
struct pair {
	gnutls_pcert_st pcert[TLS_MAX_CHAIN];
	unsigned ncert;
	gnutls_privkey_t key;
	struct pair *retired; /* pairs replaced by reloads, kept until tls_free */
};

struct tls {
	char *cert_file, *key_file;
	char *ca_pem; /* NULL without mutual TLS */
	int mutual;
	pthread_mutex_t lock;
	struct pair *current;
};

/* The callback has no argument of its own: the process's one TLS setup. */
static struct tls *active;

static void pair_free(struct pair *p)
{
	unsigned i;

	while (p != NULL) {
		struct pair *next = p->retired;

		for (i = 0; i < p->ncert; i++)
			gnutls_pcert_deinit(&p->pcert[i]);
		if (p->key != NULL)
			gnutls_privkey_deinit(p->key);
		free(p);
		p = next;
	}
}

static int load(const char *path, gnutls_datum_t *d, const char *what, char *err)
{
	int rc = gnutls_load_file(path, d);

	if (rc < 0)
		return err_set(err, -EINVAL, "%s %s: %s", what, path, gnutls_strerror(rc));
	return 0;
}

/* Read and check the pair: the chain parses, the key parses, and a
 * throwaway credentials set accepts them together (the key matches). */
static int pair_load(const char *cert_file, const char *key_file, struct pair **out, char *err)
{
	gnutls_datum_t cert = { NULL, 0 }, key = { NULL, 0 };
	gnutls_certificate_credentials_t check = NULL;
	struct pair *p = calloc(1, sizeof(*p));
	int rc;

	*out = NULL;
	if (p == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	rc = load(cert_file, &cert, "tls_cert_file", err);
	if (rc == 0)
		rc = load(key_file, &key, "tls_key_file", err);
	if (rc == 0 && gnutls_certificate_allocate_credentials(&check) < 0)
		rc = err_set(err, -ENOMEM, "out of memory");
	if (rc == 0 && (rc = gnutls_certificate_set_x509_key_mem2(
	                        check, &cert, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0)
		rc = err_set(err, -EINVAL, "tls_cert_file %s with tls_key_file %s: %s", cert_file,
		             key_file, gnutls_strerror(rc));
	p->ncert = TLS_MAX_CHAIN;
	if (rc == 0 && (rc = gnutls_pcert_list_import_x509_raw(p->pcert, &p->ncert, &cert,
	                                                       GNUTLS_X509_FMT_PEM, 0)) < 0)
		rc = err_set(err, -EINVAL, "tls_cert_file %s: %s", cert_file, gnutls_strerror(rc));
	if (rc < 0)
		p->ncert = 0;
	if (rc == 0 &&
	    (gnutls_privkey_init(&p->key) < 0 ||
	     (rc = gnutls_privkey_import_x509_raw(p->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0))
		rc = err_set(err, -EINVAL, "tls_key_file %s: %s", key_file, gnutls_strerror(rc));
	if (check != NULL)
		gnutls_certificate_free_credentials(check);
	gnutls_free(cert.data);
	if (key.data != NULL) {
		memset(key.data, 0, key.size);
		gnutls_free(key.data);
	}
	if (rc < 0) {
		pair_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

static int retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                    gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *key)
{
	struct tls *t = active;

	if (t == NULL)
		return -1;
	if (t->mutual) {
		/* Decided here, during the handshake: a client certificate is
		 * required, and gnutls checks it against the CA before the
		 * handshake completes. */
		gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(session, NULL, 0);
	}
	pthread_mutex_lock(&t->lock);
	*pcert = t->current->pcert;
	*pcert_length = t->current->ncert;
	*key = t->current->key;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

void *tls_cert_callback(void)
{
	return (void *)(gnutls_certificate_retrieve_function2 *)retrieve;
}

int tls_new(struct tls **out, const char *cert, const char *key, const char *ca, char *err)
{
	struct tls *t = calloc(1, sizeof(*t));
	gnutls_datum_t d = { NULL, 0 };
	int rc;

	*out = NULL;
	if (t == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&t->lock, NULL);
	t->cert_file = strdup(cert);
	t->key_file = strdup(key);
	rc = t->cert_file && t->key_file ? pair_load(cert, key, &t->current, err)
	                                 : err_set(err, -ENOMEM, "out of memory");
	if (rc == 0 && ca != NULL && ca[0] != '\0') {
		rc = load(ca, &d, "tls_ca_file", err);
		if (rc == 0 && (t->ca_pem = malloc(d.size + 1)) == NULL)
			rc = err_set(err, -ENOMEM, "out of memory");
		if (rc == 0) {
			memcpy(t->ca_pem, d.data, d.size);
			t->ca_pem[d.size] = '\0';
			t->mutual = 1;
		}
		gnutls_free(d.data);
	}
	if (rc < 0) {
		tls_free(t);
		return rc;
	}
	active = t;
	*out = t;
	return 0;
}

int tls_reload(struct tls *t, char *err)
{
	struct pair *p;
	int rc = pair_load(t->cert_file, t->key_file, &p, err);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&t->lock);
	p->retired = t->current;
	t->current = p;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

const char *tls_ca_pem(const struct tls *t)
{
	return t->ca_pem;
}

void tls_free(struct tls *t)
{
	if (t == NULL)
		return;
	if (active == t)
		active = NULL;
	pair_free(t->current);
	pthread_mutex_destroy(&t->lock);
	free(t->ca_pem);
	free(t->cert_file);
	free(t->key_file);
	free(t);
}
