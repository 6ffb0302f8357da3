/* SPDX-License-Identifier: MIT */
/* check_metrics.c - the Prometheus exposition after known events: every
 * family announced once, the values the events imply, cumulative buckets,
 * escaped labels. */
#include "autoconfig.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "endpoint.h"
#include "metrics.h"
#include "runner.h"

static char *render(struct metrics *mt)
{
	struct metrics_gauges g = {
		.queue_depth = 3, .workers = 2, .workers_busy = 1, .models_loaded = 5
	};
	struct buf b = { 0 };
	size_t len;

	metrics_render(mt, &b, &g);
	buf_add(&b, "", 1);
	ck_assert_int_eq(buf_ok(&b), 0);
	return buf_take(&b, &len);
}

/* The value of the sample whose name and labels are exactly series; -1 when
 * absent. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p;

	for (p = text; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

static int count_lines(const char *text, const char *prefix)
{
	const char *p;
	int n = 0;

	for (p = text; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		n += strncmp(p, prefix, strlen(prefix)) == 0;
	return n;
}

START_TEST(test_after_traffic)
{
	struct metrics *mt;
	char *text;

	ck_assert_int_eq(metrics_new(&mt), 0);
	metrics_request(mt, EP_INFER, 200, 2000000, 100, 50); /* 2 ms */
	metrics_request(mt, EP_INFER, 200, 30000000, 10, 5);  /* 30 ms */
	metrics_request(mt, EP_INFER, 418, 1000, 1, 1);       /* an odd code */
	metrics_request(mt, EP_CONV, 400, 1000, 7, 3);
	metrics_request(mt, (enum endpoint)EP_COUNT, 404, 1000, 0, 0); /* out of range */
	metrics_compute(mt, "deeplab", 1000, 2000, 3000000, 4000, 1e9);
	metrics_compute(mt, "a\"b\\c\nd", 0, 0, 1, 0, 5);
	metrics_inflight(mt, 1);
	metrics_inflight(mt, 1);
	metrics_inflight(mt, -1);
	metrics_reload(mt, 1);
	metrics_reload(mt, 0);
	metrics_reload(mt, 0);
	metrics_abandoned(mt, EP_INFER, ABANDON_SHUTDOWN, 0);
	metrics_abandoned(mt, EP_INFER, ABANDON_SHUTDOWN, 0);
	metrics_abandoned(mt, EP_ASPP, ABANDON_CLIENT_GONE, 1500000000);
	metrics_abandoned(mt, EP_ASPP, ABANDON_DEADLINE, 250000000);
	metrics_abandoned(mt, EP_ASPP, ABANDON_DEADLINE, 250000000);
	metrics_abandoned(mt, (enum endpoint)EP_COUNT, ABANDON_DEADLINE, 1); /* ignored */
	text = render(mt);
	ck_assert(sample(text, "atrousd_requests_abandoned_total{endpoint=\"aspp\","
	                       "reason=\"deadline\"}") == 2);
	ck_assert(sample(text, "atrousd_requests_abandoned_total{endpoint=\"aspp\","
	                       "reason=\"client_gone\"}") == 1);
	ck_assert(sample(text, "atrousd_abandoned_compute_seconds_total{endpoint=\"aspp\","
	                       "reason=\"client_gone\"}") == 1.5);
	ck_assert(sample(text, "atrousd_abandoned_compute_seconds_total{endpoint=\"aspp\","
	                       "reason=\"deadline\"}") == 0.5);
	/* The mean compute time of a model: 3 ms over one run; none for others. */
	ck_assert_uint_eq(metrics_mean_compute_ns(mt, "deeplab"), 3000000);
	ck_assert_uint_eq(metrics_mean_compute_ns(mt, "nothing"), 0);

	ck_assert(sample(text, "atrousd_requests_total{endpoint=\"infer\",code=\"200\"}") == 2);
	ck_assert(sample(text, "atrousd_requests_total{endpoint=\"infer\",code=\"other\"}") == 1);
	ck_assert(sample(text, "atrousd_requests_total{endpoint=\"atrous_conv2d\",code=\"400\"}") ==
	          1);
	ck_assert(sample(text, "atrousd_requests_total{endpoint=\"unknown\",code=\"404\"}") == 1);
	ck_assert(sample(text, "atrousd_requests_total{endpoint=\"infer\",code=\"400\"}") == -1);
	/* Buckets are cumulative and +Inf equals _count. */
	ck_assert(sample(text, "atrousd_request_duration_seconds_bucket{endpoint=\"infer\","
	                       "le=\"0.001\"}") == 1);
	ck_assert(sample(text, "atrousd_request_duration_seconds_bucket{endpoint=\"infer\","
	                       "le=\"0.0025\"}") == 2);
	ck_assert(sample(text, "atrousd_request_duration_seconds_bucket{endpoint=\"infer\","
	                       "le=\"0.05\"}") == 3);
	ck_assert(sample(text, "atrousd_request_duration_seconds_bucket{endpoint=\"infer\","
	                       "le=\"+Inf\"}") == 3);
	ck_assert(sample(text, "atrousd_request_duration_seconds_count{endpoint=\"infer\"}") == 3);
	ck_assert_double_eq_tol(
	        sample(text, "atrousd_request_duration_seconds_sum{endpoint=\"infer\"}"), 0.032001,
	        1e-9);
	ck_assert(sample(text, "atrousd_compute_duration_seconds_count{model=\"deeplab\"}") == 1);
	ck_assert(sample(text,
	                 "atrousd_compute_duration_seconds_count{model=\"a\\\"b\\\\c\\nd\"}") == 1);
	ck_assert(sample(text, "atrousd_queue_duration_seconds_count") == 2);
	ck_assert(sample(text, "atrousd_flops_total") == 1000000005);
	ck_assert(sample(text, "atrousd_received_bytes_total") == 118);
	ck_assert(sample(text, "atrousd_sent_bytes_total") == 59);
	ck_assert(sample(text, "atrousd_inflight_requests") == 1);
	ck_assert(sample(text, "atrousd_queue_depth") == 3);
	ck_assert(sample(text, "atrousd_workers") == 2);
	ck_assert(sample(text, "atrousd_workers_busy") == 1);
	ck_assert(sample(text, "atrousd_models_loaded") == 5);
	ck_assert(sample(text, "atrousd_model_reloads_total{result=\"success\"}") == 1);
	ck_assert(sample(text, "atrousd_model_reloads_total{result=\"failure\"}") == 2);
	ck_assert(sample(text, "atrousd_build_info{version=\"" PACKAGE_VERSION "\"}") == 1);
	ck_assert(sample(text, "atrousd_requests_abandoned_total{endpoint=\"infer\",reason="
	                       "\"shutdown\"}") == 2);
	ck_assert(
	        sample(text,
	               "atrousd_requests_abandoned_total{endpoint=\"aspp\",reason=\"shutdown\"}") ==
	        0);
	ck_assert(sample(text, "process_resident_memory_bytes") > 0);
	free(text);
	metrics_free(mt);
}
END_TEST

START_TEST(test_families)
{
	static const char *const families[] = {
		"atrousd_requests_total",
		"atrousd_request_duration_seconds",
		"atrousd_queue_duration_seconds",
		"atrousd_decode_duration_seconds",
		"atrousd_encode_duration_seconds",
		"atrousd_compute_duration_seconds",
		"atrousd_queue_depth",
		"atrousd_inflight_requests",
		"atrousd_workers",
		"atrousd_flops_total",
		"atrousd_models_loaded",
		"atrousd_model_reloads_total",
	};
	struct metrics *mt;
	char *text, line[128];
	size_t i;

	ck_assert_int_eq(metrics_new(&mt), 0);
	text = render(mt);
	for (i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		snprintf(line, sizeof(line), "# TYPE %s ", families[i]);
		ck_assert_msg(count_lines(text, line) == 1, "%s announced %d times", families[i],
		              count_lines(text, line));
		snprintf(line, sizeof(line), "# HELP %s ", families[i]);
		ck_assert_int_eq(count_lines(text, line), 1);
	}
	/* Nothing happened: no request series, an in-flight gauge of 0. */
	ck_assert_int_eq(count_lines(text, "atrousd_requests_total{"), 0);
	ck_assert(sample(text, "atrousd_inflight_requests") == 0);
	/* Going below zero (a reply counted twice) shows 0, not a huge number. */
	metrics_inflight(mt, -1);
	free(text);
	text = render(mt);
	ck_assert(sample(text, "atrousd_inflight_requests") == 0);
	free(text);
	metrics_free(mt);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_after_traffic);
	tcase_add_test(tc, test_families);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
