/* chan: control <-> supervisor request queues with eventfd doorbells. */
#include "chan.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int re_chan_init(struct re_chan *ch, int sup_fd, int ctl_fd)
{
	int r = pthread_mutex_init(&ch->lock, NULL);

	if (r != 0) {
		return -r;
	}
	ch->pending = NULL;
	ch->pending_tail = &ch->pending;
	ch->done = NULL;
	ch->done_tail = &ch->done;
	ch->sup_fd = sup_fd;
	ch->ctl_fd = ctl_fd;
	return 0;
}

static void free_list(struct re_request *r)
{
	while (r != NULL) {
		struct re_request *next = r->next;

		free(r);
		r = next;
	}
}

void re_chan_finish(struct re_chan *ch)
{
	free_list(ch->pending);
	free_list(ch->done);
	ch->pending = NULL;
	ch->done = NULL;
	(void)pthread_mutex_destroy(&ch->lock);
}

static void ring(int fd)
{
	uint64_t one = 1;

	/* Fails only if the counter would overflow, which the reader prevents. */
	(void)!write(fd, &one, sizeof(one));
}

void re_chan_submit(struct re_chan *ch, struct re_request *r)
{
	r->next = NULL;
	pthread_mutex_lock(&ch->lock);
	*ch->pending_tail = r;
	ch->pending_tail = &r->next;
	pthread_mutex_unlock(&ch->lock);
	ring(ch->sup_fd);
}

struct re_request *re_chan_take_pending(struct re_chan *ch)
{
	struct re_request *r;

	pthread_mutex_lock(&ch->lock);
	r = ch->pending;
	ch->pending = NULL;
	ch->pending_tail = &ch->pending;
	pthread_mutex_unlock(&ch->lock);
	return r;
}

void re_chan_complete(struct re_chan *ch, struct re_request *r)
{
	r->next = NULL;
	pthread_mutex_lock(&ch->lock);
	*ch->done_tail = r;
	ch->done_tail = &r->next;
	pthread_mutex_unlock(&ch->lock);
	ring(ch->ctl_fd);
}

struct re_request *re_chan_take_done(struct re_chan *ch)
{
	struct re_request *r;

	pthread_mutex_lock(&ch->lock);
	r = ch->done;
	ch->done = NULL;
	ch->done_tail = &ch->done;
	pthread_mutex_unlock(&ch->lock);
	return r;
}
