/* SPDX-License-Identifier: MIT */
/* repo.h - Triton's model-repository extension over the served set: the
 * index, load (from the folder, or from files sent in the request) and
 * unload, each answering as Triton's clients expect.
 *
 *	POST /v2/repository/index               {} or {"ready": true}
 *	POST /v2/repository/models/NAME/load    {} or {"parameters": {"config": "...",
 *	                                            "file:1/model.onnx": "<base64>"}}
 *	POST /v2/repository/models/NAME/unload  {} or {"parameters": {...}}
 */
#ifndef ATROUSD_REPO_H
#define ATROUSD_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "models.h"
#include "reply.h"

/* Most files one load may carry. */
#define REPO_MAX_FILES 256

void repo_index(struct models *ms, const char *body, size_t len, struct reply *r);

void repo_load(struct models *ms, const char *name, const char *body, size_t len, struct reply *r);

void repo_unload(struct models *ms, const char *name, const char *body, size_t len,
                 struct reply *r);

#endif
