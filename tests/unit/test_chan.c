/* test_chan: unit test for src/chan.c, the control -> supervisor request channel:
 * FIFO order both ways, one doorbell ring per submit and per completion, empty takes,
 * finish freeing what is still queued, and a producer thread racing the consumer
 * (no request lost or reordered).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "chan.h"

#include "check.h"

static struct re_request *req(uint64_t gen)
{
	struct re_request *r = calloc(1, sizeof(*r));

	CHECK(r != NULL);
	r->client_gen = gen;
	return r;
}

/* The eventfd's counter (read resets it); 0 when it was not rung. */
static uint64_t rings(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
		return 0;
	}
	return v;
}

static void test_order(void)
{
	struct re_chan ch;
	struct re_request *list, *r;
	int sup = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), ctl = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t want = 1;

	CHECK(sup >= 0 && ctl >= 0);
	CHECK(re_chan_init(&ch, sup, ctl) == 0);
	CHECK(re_chan_take_pending(&ch) == NULL);
	CHECK(re_chan_take_done(&ch) == NULL);
	for (uint64_t i = 1; i <= 3; i++) {
		re_chan_submit(&ch, req(i));
	}
	CHECK(rings(sup) == 3 && rings(ctl) == 0);
	list = re_chan_take_pending(&ch);
	CHECK(re_chan_take_pending(&ch) == NULL);	/* taken whole */
	re_chan_submit(&ch, req(4));			/* the queue works after a take */
	while (list != NULL) {
		r = list;
		list = r->next;
		CHECK(r->client_gen == want++);
		r->status = 0;
		snprintf(r->reply, sizeof(r->reply), "done %llu", (unsigned long long)r->client_gen);
		re_chan_complete(&ch, r);
	}
	CHECK(want == 4);
	CHECK(rings(ctl) == 3);
	want = 1;
	for (r = re_chan_take_done(&ch); r != NULL; want++) {
		struct re_request *next = r->next;
		char expect[32];

		snprintf(expect, sizeof(expect), "done %llu", (unsigned long long)want);
		CHECK(r->client_gen == want && strcmp(r->reply, expect) == 0);
		free(r);
		r = next;
	}
	CHECK(want == 4);
	re_chan_complete(&ch, req(5));	/* left queued both ways: finish frees them */
	re_chan_finish(&ch);
	close(sup);
	close(ctl);
}

#define NPROD 20000

static void *producer(void *arg)
{
	struct re_chan *ch = arg;

	for (uint64_t i = 0; i < NPROD; i++) {
		re_chan_submit(ch, req(i));
	}
	return NULL;
}

static void test_race(void)
{
	struct re_chan ch;
	pthread_t t;
	uint64_t next = 0;
	int sup = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), ctl = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	CHECK(sup >= 0 && ctl >= 0);
	CHECK(re_chan_init(&ch, sup, ctl) == 0);
	CHECK(pthread_create(&t, NULL, producer, &ch) == 0);
	while (next < NPROD) {
		struct re_request *r = re_chan_take_pending(&ch);

		while (r != NULL) {
			struct re_request *n = r->next;

			CHECK(r->client_gen == next);
			next++;
			free(r);
			r = n;
		}
	}
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(re_chan_take_pending(&ch) == NULL);
	CHECK(rings(sup) == NPROD);
	re_chan_finish(&ch);
	close(sup);
	close(ctl);
}

int main(void)
{
	test_order();
	test_race();
	printf("chan: all checks passed\n");
	return 0;
}
