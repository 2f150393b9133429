/* load N SECS [SLEEP_US]: N threads; SLEEP_US 0 (default) spins, else spin ~1 ms then sleep.
 * Prints the process id, then per thread "tid sum_exec_runtime run_delay" read from
 * /proc/thread-self/schedstat just before the thread ends. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double secs; static long sleep_us;
static char lines[64][96];
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
static void *run(void *a){ long i=(long)a; double end=now()+secs; volatile unsigned long x=0;
  while(now()<end){ double s=now(); while(now()-s<0.001) x++; if(sleep_us) usleep(sleep_us);}
  char buf[96]={0}; FILE *f=fopen("/proc/thread-self/schedstat","r");
  if(f){ if(!fgets(buf,sizeof buf,f)) buf[0]=0; fclose(f);} 
  snprintf(lines[i],sizeof lines[i],"%ld %s",(long)syscall(SYS_gettid),buf); return NULL;}
int main(int c,char**v){int n=atoi(v[1]);secs=atof(v[2]);sleep_us=c>3?atol(v[3]):0;
  if(n>64)n=64; pthread_t t[64]; for(long i=0;i<n;i++)pthread_create(&t[i],0,run,(void*)i);
  for(int i=0;i<n;i++)pthread_join(t[i],0);
  printf("%d\n", getpid()); for(int i=0;i<n;i++)fputs(lines[i],stdout); return 0;}
