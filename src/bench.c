/* SPDX-License-Identifier: MIT */
/* bench.c - benchmark cases built in memory, timed on the real pool. */
#include "autoconfig.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "error.h"
#include "graphjson.h"
#include "pool.h"

struct bcase {
	const char *name;
	const char *what;
	int64_t value[4];
	const char *layers; /* JSON with tensors named as shapes "w:KH,KW,I,O" */
};

static const struct bcase cases[] = {
	{ "seed1",
	  "value [1,28,28,3], filters [5,5,3,32], rate 2, SAME",
	  { 1, 28, 28, 3 },
	  "[{\"filters\":\"w:5,5,3,32\",\"rate\":2,\"padding\":\"SAME\"}]" },
	{ "chain",
	  "three rate-2 SAME layers 3->32->64->128 on [1,28,28,3]",
	  { 1, 28, 28, 3 },
	  "[{\"filters\":\"w:3,3,3,32\",\"rate\":2,\"padding\":\"SAME\"},"
	  "{\"filters\":\"w:3,3,32,64\",\"rate\":2,\"padding\":\"SAME\"},"
	  "{\"filters\":\"w:3,3,64,128\",\"rate\":2,\"padding\":\"SAME\"}]" },
	{ "os16",
	  "DeepLab OS16 ASPP head: [1,33,33,2048], 1x1 + rates 6/12/18 x256, pooling, "
	  "projection 1280->256, ReLU",
	  { 1, 33, 33, 2048 },
	  "[{\"type\":\"aspp\",\"image_pooling\":{\"filters\":\"w:1,1,2048,256\",\"bias\":\"b:"
	  "256\","
	  "\"activation\":\"relu\"},\"branches\":["
	  "{\"filters\":\"w:1,1,2048,256\",\"rate\":1,\"bias\":\"b:256\",\"activation\":\"relu\"},"
	  "{\"filters\":\"w:3,3,2048,256\",\"rate\":6,\"bias\":\"b:256\",\"activation\":\"relu\"},"
	  "{\"filters\":\"w:3,3,2048,256\",\"rate\":12,\"bias\":\"b:256\",\"activation\":\"relu\"},"
	  "{\"filters\":\"w:3,3,2048,256\",\"rate\":18,\"bias\":\"b:256\",\"activation\":\"relu\"}]"
	  ","
	  "\"projection\":{\"filters\":\"w:1,1,1280,256\",\"bias\":\"b:256\",\"activation\":"
	  "\"relu\"}}]" },
	{ "os8",
	  "DeepLab OS8 ASPP head: [1,65,65,256], 1x1 + rates 12/24/36 x256, pooling, "
	  "projection 1280->256, ReLU",
	  { 1, 65, 65, 256 },
	  "[{\"type\":\"aspp\",\"image_pooling\":{\"filters\":\"w:1,1,256,256\",\"bias\":\"b:256\","
	  "\"activation\":\"relu\"},\"branches\":["
	  "{\"filters\":\"w:1,1,256,256\",\"rate\":1,\"bias\":\"b:256\",\"activation\":\"relu\"},"
	  "{\"filters\":\"w:3,3,256,256\",\"rate\":12,\"bias\":\"b:256\",\"activation\":\"relu\"},"
	  "{\"filters\":\"w:3,3,256,256\",\"rate\":24,\"bias\":\"b:256\",\"activation\":\"relu\"},"
	  "{\"filters\":\"w:3,3,256,256\",\"rate\":36,\"bias\":\"b:256\",\"activation\":\"relu\"}],"
	  "\"projection\":{\"filters\":\"w:1,1,1280,256\",\"bias\":\"b:256\",\"activation\":"
	  "\"relu\"}}]" },
	{ "block4os16",
	  "ResNet block4 at OS16: [1,33,33,512], 3x3x512x512, rate 2, bias, ReLU",
	  { 1, 33, 33, 512 },
	  "[{\"filters\":\"w:3,3,512,512\",\"rate\":2,\"padding\":\"SAME\",\"bias\":\"b:512\","
	  "\"activation\":\"relu\"}]" },
	{ "block3os8",
	  "ResNet block3 at OS8: [1,65,65,256], 3x3x256x256, rate 2, bias, ReLU",
	  { 1, 65, 65, 256 },
	  "[{\"filters\":\"w:3,3,256,256\",\"rate\":2,\"padding\":\"SAME\",\"bias\":\"b:256\","
	  "\"activation\":\"relu\"}]" },
	{ "block4os8",
	  "ResNet block4 at OS8: [1,65,65,512], 3x3x512x512, rate 4, bias, ReLU",
	  { 1, 65, 65, 512 },
	  "[{\"filters\":\"w:3,3,512,512\",\"rate\":4,\"padding\":\"SAME\",\"bias\":\"b:512\","
	  "\"activation\":\"relu\"}]" },
};

/* Give every convolution of g the algorithm a (auto keeps each layer's);
 * unfolded drops the ASPP fold of image pooling (the ablation's baseline). */
static void set_algorithm(struct graph *g, enum conv_algo a, int unfolded)
{
	size_t i, b;

	for (i = 0; i < graph_size(g); i++) {
		struct graph_layer *l = graph_layer(g, i);

		if (unfolded) {
			tensor_free(l->aspp.proj_rest);
			l->aspp.proj_rest = NULL;
		}
		if (a == CONV_ALGO_AUTO)
			continue;
		l->conv.spec.algo = a;
		for (b = 0; b < l->aspp.nbranches; b++)
			l->aspp.branches[b].spec.algo = a;
	}
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(float *v, size_t n, unsigned seed, float scale)
{
	size_t i;

	for (i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		v[i] = scale * ((float)(seed >> 8) / 8388608.0f - 1.0f);
	}
}

/* "w:3,3,2048,256" or "b:256" -> a random tensor of that shape. */
static int make_tensor(void *ctx, json_t *v, const char *field, struct tensor **out, char *err)
{
	int64_t dim[4];
	int rank = 0;
	const char *s;
	char *end;

	if (!json_is_string(v))
		return err_set(err, -EINVAL, "missing \"%s\"", field);
	for (s = json_string_value(v) + 2; rank < 4; s = end + 1) {
		dim[rank++] = strtoll(s, &end, 10);
		if (*end != ',')
			break;
	}
	if (tensor_new_uninit(out, rank, dim, err) < 0)
		return -ENOMEM;
	fill((*out)->data, (*out)->count, (unsigned)(*out)->count, rank == 4 ? 0.02f : 0.1f);
	return 0;
}

struct job {
	const struct graph *g;
	const struct tensor *x;
	const struct par_runner *runner;
	int repeats;
	double *times;
	struct graph_stats st;
	int rc;
	char err[ERR_LEN];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
};

static void run_job(void *arg)
{
	struct job *j = arg;
	struct tensor *y = NULL;
	int r;

	for (r = -1; r < j->repeats && j->rc == 0; r++) { /* r = -1 warms up */
		double t0 = now_s();

		j->rc = graph_run(j->g, j->x, j->runner, &y, &j->st, j->err);
		if (r >= 0)
			j->times[r] = now_s() - t0;
		tensor_free(y);
		y = NULL;
	}
	pthread_mutex_lock(&j->lock);
	j->done = 1;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Run fn on the pool and wait for it. */
static void on_pool(struct pool *p, struct job *j)
{
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	j->done = 0;
	while (pool_submit(p, run_job, j, 0) != 0)
		usleep(1000);
	pthread_mutex_lock(&j->lock);
	while (!j->done)
		pthread_cond_wait(&j->cond, &j->lock);
	pthread_mutex_unlock(&j->lock);
	pthread_cond_destroy(&j->cond);
	pthread_mutex_destroy(&j->lock);
}

struct gemm_job {
	int n, reps;
	float *a, *b, *c;
};

static void gemm_task(void *arg, size_t i, void *scratch)
{
	struct gemm_job *g = arg;
	size_t sz = (size_t)g->n * (size_t)g->n;
	int r;

	for (r = 0; r < g->reps; r++)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->n, g->n, 1.0f,
		            g->a + i * sz, g->n, g->b + i * sz, g->n, 0.0f, g->c + i * sz, g->n);
}

struct ceiling {
	struct pool *pool;
	struct gemm_job g;
	int tasks;
	double seconds;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
};

static void ceiling_job(void *arg)
{
	struct ceiling *c = arg;
	double t0 = now_s();

	par_run(pool_runner(c->pool), (size_t)c->tasks, 64, gemm_task, &c->g);
	c->seconds = now_s() - t0;
	pthread_mutex_lock(&c->lock);
	c->done = 1;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Independent single-threaded 1024^3 sgemms, one per worker, at once. */
static double sgemm_ceiling(struct pool *p, int workers)
{
	struct ceiling c = { 0 };
	size_t sz = 1024 * 1024;

	c.pool = p;
	c.tasks = workers;
	c.g.n = 1024;
	c.g.reps = 3;
	c.g.a = calloc(sz * (size_t)workers, sizeof(float));
	c.g.b = calloc(sz * (size_t)workers, sizeof(float));
	c.g.c = calloc(sz * (size_t)workers, sizeof(float));
	if (!c.g.a || !c.g.b || !c.g.c)
		goto done;
	fill(c.g.a, sz * (size_t)workers, 1, 1.0f);
	fill(c.g.b, sz * (size_t)workers, 2, 1.0f);
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	gemm_task(&c.g, 0, NULL); /* warm up */
	pool_submit(p, ceiling_job, &c, 0);
	pthread_mutex_lock(&c.lock);
	while (!c.done)
		pthread_cond_wait(&c.cond, &c.lock);
	pthread_mutex_unlock(&c.lock);
done:
	free(c.g.a);
	free(c.g.b);
	free(c.g.c);
	return c.seconds > 0 ? 2.0 * 1024 * 1024 * 1024 * c.g.reps * workers / c.seconds / 1e9 : 0;
}

int bench_run(const struct bench_options *o, FILE *out, char *err)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = o->threads > 0 ? o->threads : (ncpu > 0 ? (int)ncpu : 1);
	int repeats = o->repeats > 0 ? o->repeats : 10;
	struct pool *p;
	size_t i;
	int rc;

	rc = pool_new(&p, threads, 4, err);
	if (rc < 0)
		return rc;
	pool_set_spin(p, POOL_SPIN_US); /* as the daemon's default */
	if (!o->json)
		fprintf(out,
		        "atrous bench: %d worker(s), single-threaded sgemm per task, %d runs\n",
		        threads, repeats);
	if (o->only == NULL || strcmp(o->only, "sgemm") == 0) {
		double g = sgemm_ceiling(p, threads);

		if (o->json)
			fprintf(out, "{\"case\":\"sgemm\",\"threads\":%d,\"gflops\":%.1f}\n",
			        threads, g);
		else
			fprintf(out,
			        "%-10s %10s %10s %14s %14s   OpenBLAS sgemm ceiling, 1024^3 x %d "
			        "in parallel: %.1f GFLOP/s\n",
			        "case", "best ms", "median ms", "useful GF/s", "nominal GF/s",
			        threads, g);
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]) && rc == 0; i++) {
		const struct bcase *c = &cases[i];
		struct job j = { 0 };
		json_error_t jerr;
		json_t *layers;
		struct graph *g = NULL;
		struct tensor *x = NULL;
		double best, median, times[1000];

		if (o->only != NULL && strcmp(o->only, c->name) != 0)
			continue;
		layers = json_loads(c->layers, 0, &jerr);
		rc = graphjson_layers(&g, layers, make_tensor, NULL, err);
		json_decref(layers);
		if (rc == 0)
			rc = graph_prepare(g, err); /* as a stored model */
		if (rc == 0)
			rc = tensor_new_uninit(&x, 4, c->value, err);
		if (rc < 0)
			break;
		set_algorithm(g, o->algo, o->unfolded);
		fill(x->data, x->count, 7, 1.0f);
		j.g = g;
		j.x = x;
		j.runner = pool_runner(p);
		j.repeats = repeats > 1000 ? 1000 : repeats;
		j.times = times;
		on_pool(p, &j);
		rc = j.rc;
		if (rc < 0)
			err_set(err, rc, "%s: %s", c->name, j.err);
		if (rc == 0) {
			qsort(times, (size_t)j.repeats, sizeof(double), cmp_double);
			best = times[0];
			median = times[j.repeats / 2];
			if (o->json)
				fprintf(out,
				        "{\"case\":\"%s\",\"threads\":%d,\"best_ms\":%.3f,\"median_"
				        "ms\":%.3f,"
				        "\"useful_gflop\":%.4f,\"nominal_gflop\":%.4f,"
				        "\"algorithms\":\"%s\",\"fast_weights_bytes\":%zu}\n",
				        c->name, threads, best * 1e3, median * 1e3,
				        j.st.useful_flops / 1e9, j.st.nominal_flops / 1e9,
				        j.st.algorithms, graph_fast_bytes(g));
			else
				fprintf(out,
				        "%-10s %10.2f %10.2f %14.1f %14.1f   %s [%s; %.1f MiB]\n",
				        c->name, best * 1e3, median * 1e3,
				        j.st.useful_flops / best / 1e9,
				        j.st.nominal_flops / best / 1e9, c->what, j.st.algorithms,
				        (double)graph_fast_bytes(g) / 1048576);
		}
		tensor_free(x);
		graph_free(g);
	}
	pool_free(p);
	return rc;
}

int bench_jansson(const char *path, int repeats, FILE *out, char *err)
{
	double load_best = 1e30, dump_best = 1e30;
	size_t len = 0, dumped = 0;
	char *body = NULL;
	FILE *f;
	int r;

	f = fopen(path, "rb");
	if (f == NULL)
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	body = malloc(len + 1);
	if (body == NULL || fread(body, 1, len, f) != len) {
		fclose(f);
		free(body);
		return err_set(err, -EIO, "%s: cannot read", path);
	}
	fclose(f);
	for (r = 0; r < (repeats > 0 ? repeats : 3); r++) {
		json_error_t jerr;
		double t0 = now_s(), t1, t2;
		json_t *root = json_loadb(body, len, 0, &jerr);
		char *text;

		t1 = now_s();
		if (root == NULL) {
			free(body);
			return err_set(err, -EINVAL, "%s: %s", path, jerr.text);
		}
		text = json_dumps(root, JSON_COMPACT);
		t2 = now_s();
		dumped = text ? strlen(text) : 0;
		free(text);
		json_decref(root);
		if (t1 - t0 < load_best)
			load_best = t1 - t0;
		if (t2 - t1 < dump_best)
			dump_best = t2 - t1;
	}
	fprintf(out,
	        "{\"bytes\":%zu,\"json_loadb_ms\":%.3f,\"json_dumps_ms\":%.3f,\"dumped_bytes\":%zu}"
	        "\n",
	        len, load_best * 1e3, dump_best * 1e3, dumped);
	free(body);
	return 0;
}
