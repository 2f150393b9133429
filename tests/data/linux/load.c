/* load N SECS SLEEP_US: N threads; if SLEEP_US==0 they spin, else spin ~1ms then sleep SLEEP_US. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static double secs; static long sleep_us;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
static void *run(void *a){ (void)a; double end=now()+secs; volatile unsigned long x=0;
  while(now()<end){ double s=now(); while(now()-s<0.001) x++; if(sleep_us) usleep(sleep_us);} return NULL;}
int main(int c,char**v){int n=atoi(v[1]);secs=atof(v[2]);sleep_us=c>3?atol(v[3]):0;
  pthread_t t[64]; for(int i=0;i<n;i++)pthread_create(&t[i],0,run,0); for(int i=0;i<n;i++)pthread_join(t[i],0);
  printf("%d\n", getpid()); return 0;}
