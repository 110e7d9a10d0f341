#!/usr/bin/env python3
"""Random list and sorted-set commands against redis-server and keel side by
side; prints every reply that differs (with the recent history of the keys).

    python3 tests/types_fuzz.py REDIS_PORT KEEL_PORT [SEED] [COUNT]

Both servers must be running and are FLUSHALLed. Commands and replies are
deterministic (no RAND commands), so any difference is a bug in keel or a
Redis edge keel does not copy yet.
"""
import random, socket, sys
def conn(port):
    s=socket.create_connection(("127.0.0.1",port)); f=s.makefile('rb'); return s,f
def send(s, parts):
    s.sendall(b"*%d\r\n"%len(parts)+b"".join(b"$%d\r\n%s\r\n"%(len(p),p) for p in parts))
def read(f):
    line=f.readline()
    t=line[:1]; body=line[1:-2]
    if t in b"+-:": return (t,body)
    if t==b"$":
        n=int(body)
        if n<0: return None
        d=f.read(n+2); return d[:-2]
    if t==b"*":
        n=int(body)
        if n<0: return "nilarr"
        return [read(f) for _ in range(n)]
    raise Exception(line)
rng=random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
N=int(sys.argv[4]) if len(sys.argv) > 4 else 3000
A=conn(int(sys.argv[1])); B=conn(int(sys.argv[2]))
keys=[b"l1",b"l2",b"z1",b"z2",b"h1",b"s1",b"s2"]
mem=[b"a",b"b",b"c",b"d",b"e",b"aa",b"b\x00"]
def num(): return str(rng.choice([-3,-2,-1,0,1,2,3,5,10,-10])).encode()
def sc(): return rng.choice([b"1",b"2",b"-1",b"0",b"1.5",b"inf",b"-inf",b"(1",b"(2",b"+inf",b"3e0",b"x"])
def lex(): return rng.choice([b"-",b"+",b"[a",b"(a",b"[b",b"(c",b"[aa",b"(e",b"a"])
def fnum(): return rng.choice([b"1",b"-1",b"0.1",b"1e3",b"x",b"inf",b"9223372036854775807",b"-2.5"])
def cmd():
    k=rng.choice(keys[:2]); z=rng.choice(keys[2:4]); m=rng.choice(mem)
    h=b"h1"; st=rng.choice([b"s1",b"s2"])
    # Now and then a key of another type: WRONGTYPE paths.
    if rng.random()<.05: k=rng.choice(keys)
    if rng.random()<.05: z=rng.choice(keys)
    if rng.random()<.05: h=rng.choice(keys)
    if rng.random()<.05: st=rng.choice(keys)
    if rng.random()<.3:
        c=rng.choice(["hset","hsetnx","hget","hmget","hdel","hlen","hexists","hstrlen","hincrby","hincrbyfloat",
                      "sadd","srem","scard","sismember","smismember","sintercard","sinterstore","sunionstore","sdiffstore","smove"])
        if c=="hset": return [b"hset",h]+sum([[rng.choice(mem),rng.choice(mem+[b"5",b"1.5"])] for _ in range(rng.randint(1,2))],[])
        if c=="hsetnx": return [b"hsetnx",h,m,rng.choice(mem)]
        if c in("hget","hexists","hstrlen"): return [c.encode(),h,m]
        if c=="hmget": return [b"hmget",h,m,rng.choice(mem)]
        if c=="hdel": return [b"hdel",h,m]
        if c=="hlen": return [b"hlen",h]
        if c=="hincrby": return [b"hincrby",h,m,rng.choice([b"1",b"-5",b"x",b"9223372036854775807"])]
        if c=="hincrbyfloat": return [b"hincrbyfloat",h,m,fnum()]
        if c in("sadd","srem"): return [c.encode(),st]+[rng.choice(mem) for _ in range(rng.randint(1,3))]
        if c=="scard": return [b"scard",st]
        if c=="sismember": return [b"sismember",st,m]
        if c=="smismember": return [b"smismember",st,m,rng.choice(mem)]
        if c=="sintercard": return [b"sintercard",b"2",b"s1",rng.choice([b"s2",b"h1",b"nokey"])]+([b"limit",num()] if rng.random()<.3 else [])
        if c in("sinterstore","sunionstore","sdiffstore"): return [c.encode(),rng.choice([b"s3",b"s1"]),b"s1",rng.choice([b"s2",b"nokey",b"z1"])]
        if c=="smove": return [b"smove",st,rng.choice([b"s1",b"s2",b"l1"]),m]
    c=rng.choice(["lpush","rpush","lpop","rpop","lrange","lindex","lset","lrem","ltrim","linsert","lpos","lmove","llen","lpushx",
                  "zadd","zrem","zincrby","zrange","zrangebyscore","zrevrangebyscore","zrangebylex","zrevrangebylex","zcount","zlexcount","zrank","zrevrank",
                  "zremrangebyscore","zremrangebyrank","zremrangebylex","zpopmin","zpopmax","zrangestore","zunionstore","zinterstore","zdiffstore","zmscore","zscore","zcard","zrevrange"])
    if c in("lpush","rpush","lpushx"): return [c.encode(),k]+[rng.choice(mem) for _ in range(rng.randint(1,3))]
    if c in("lpop","rpop"): return [c.encode(),k]+([num()] if rng.random()<.5 else [])
    if c in("lrange","ltrim"): return [c.encode(),k,num(),num()]
    if c=="lindex": return [b"lindex",k,num()]
    if c=="lset": return [b"lset",k,num(),m]
    if c=="lrem": return [b"lrem",k,num(),m]
    if c=="linsert": return [b"linsert",k,rng.choice([b"before",b"after"]),m,rng.choice(mem)]
    if c=="lpos":
        a=[b"lpos",k,m]
        for o in (b"rank",b"count",b"maxlen"):
            if rng.random()<.4: a+=[o,num()]
        return a
    if c=="lmove": return [b"lmove",k,rng.choice(keys[:2]),rng.choice([b"left",b"right"]),rng.choice([b"left",b"right"])]
    if c=="llen": return [b"llen",k]
    if c=="zadd":
        a=[b"zadd",z]+[f for f in (b"nx",b"xx",b"gt",b"lt",b"ch",b"incr") if rng.random()<.15]
        for _ in range(rng.randint(1,3)): a+=[rng.choice([b"1",b"2",b"0",b"-1",b"1.5",b"3",b"inf"]),rng.choice(mem)]
        return a
    if c=="zrem": return [b"zrem",z,m]
    if c=="zincrby": return [b"zincrby",z,rng.choice([b"1",b"-1",b"0.5"]),m]
    if c=="zrange":
        by=rng.choice([None,b"byscore",b"bylex"])
        a=[b"zrange",z]+([num(),num()] if by is None else ([sc(),sc()] if by==b"byscore" else [lex(),lex()]))
        if by: a.append(by)
        if rng.random()<.4: a.append(b"rev")
        if rng.random()<.3: a+=[b"limit",num(),num()]
        if rng.random()<.3: a.append(b"withscores")
        return a
    if c in("zrangebyscore","zrevrangebyscore"):
        a=[c.encode(),z,sc(),sc()]
        if rng.random()<.3: a.append(b"withscores")
        if rng.random()<.3: a+=[b"limit",num(),num()]
        return a
    if c in("zrangebylex","zrevrangebylex"):
        a=[c.encode(),z,lex(),lex()]
        if rng.random()<.3: a+=[b"limit",num(),num()]
        return a
    if c=="zcount" or c=="zremrangebyscore": return [c.encode(),z,sc(),sc()]
    if c=="zlexcount" or c=="zremrangebylex": return [c.encode(),z,lex(),lex()]
    if c in("zrank","zrevrank","zscore"): return [c.encode(),z,m]
    if c=="zremrangebyrank" or c=="zrevrange": return [c.encode(),z,num(),num()]
    if c in("zpopmin","zpopmax"): return [c.encode(),z]+([num()] if rng.random()<.5 else [])
    if c=="zrangestore": return [b"zrangestore",rng.choice(keys[2:]),z,num(),num()]
    if c in("zunionstore","zinterstore","zdiffstore"):
        a=[c.encode(),rng.choice(keys[2:]),b"2",b"z1",b"z2"]
        if c!="zdiffstore" and rng.random()<.4: a+=[b"weights",rng.choice([b"1",b"2",b"-1",b"0"]),rng.choice([b"1",b"inf"])]
        if c!="zdiffstore" and rng.random()<.4: a+=[b"aggregate",rng.choice([b"sum",b"min",b"max"])]
        return a
    if c=="zmscore": return [b"zmscore",z,m,rng.choice(mem)]
    if c=="zcard": return [b"zcard",z]
send(A[0],[b"flushall"]); read(A[1]); send(B[0],[b"flushall"]); read(B[1])
bad=0
hist=[]
for i in range(N):
    c=cmd()
    send(A[0],c); send(B[0],c)
    ra=read(A[1]); rb=read(B[1])
    hist.append((c,ra,rb))
    if ra!=rb:
        print("DIFF", c, "\n redis", ra, "\n keel ", rb); bad+=1
        if bad==1:
            for h in hist[-40:]:
                if b"z1" in h[0] or b"z2" in h[0]: print("   ", h)
        if bad>5: break
print("done", bad, "differences")
sys.exit(1 if bad else 0)
