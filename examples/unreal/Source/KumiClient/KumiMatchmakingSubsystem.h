// NOT COMPILED HERE. Illustrative Unreal Engine 5 code for kumi's frontend; see ../../README.md.
#pragma once

#include "CoreMinimal.h"
#include "Subsystems/GameInstanceSubsystem.h"
#include "Interfaces/IHttpRequest.h"
#include "KumiMatchmakingSubsystem.generated.h"

/** Where to play, from the frontend's Ticket.assignment. */
USTRUCT(BlueprintType)
struct FKumiAssignment
{
	GENERATED_BODY()
	UPROPERTY(BlueprintReadOnly) FString Address;      // game server ip:port
	UPROPERTY(BlueprintReadOnly) FString SessionId;
	UPROPERTY(BlueprintReadOnly) FString ServerToken;  // single-use JWT, audience = that server
	UPROPERTY(BlueprintReadOnly) FDateTime TokenExpiry; // after it: file a new ticket
};

DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FKumiAssigned, const FKumiAssignment&, Assignment);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FKumiFailed, int32, HttpStatus, const FString&, Reason);

/**
 * Files a ticket with kumi's frontend (HTTP/JSON), long-polls it until assigned, then travels to the
 * game server with the server token in the URL options: OpenLevel(address, true, "token=<jwt>").
 */
UCLASS()
class UKumiMatchmakingSubsystem : public UGameInstanceSubsystem
{
	GENERATED_BODY()
public:
	/** e.g. "https://match.example.com" (the frontend's --http-addr behind your ingress). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite) FString FrontendUrl;
	/** The player's JWT from your identity provider (dev: `kumi token issue --player p1 --ttl 1h`). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite) FString PlayerJwt;

	/** Attributes must be in the frontend's allow-list (--attributes), e.g. mode=voice, chat_group=guild-42. */
	UFUNCTION(BlueprintCallable) void FindSession(const TMap<FString, FString>& StringAttributes, const TMap<FString, float>& NumberAttributes);
	UFUNCTION(BlueprintCallable) void Cancel();

	UPROPERTY(BlueprintAssignable) FKumiAssigned OnAssigned;
	UPROPERTY(BlueprintAssignable) FKumiFailed OnFailed;

private:
	TSharedRef<IHttpRequest, ESPMode::ThreadSafe> NewRequest(const FString& Verb, const FString& Path) const;
	void OnCreated(FHttpRequestPtr Req, FHttpResponsePtr Resp, bool bOk);
	void Poll();
	void OnPolled(FHttpRequestPtr Req, FHttpResponsePtr Resp, bool bOk);
	bool HandleTicketJson(const FString& Body); // true when assigned
	void Travel(const FKumiAssignment& A);
	void Fail(FHttpResponsePtr Resp, const FString& What);

	FString TicketId;
	FTimerHandle RetryTimer;
	TSharedPtr<IHttpRequest, ESPMode::ThreadSafe> InFlight;
};
